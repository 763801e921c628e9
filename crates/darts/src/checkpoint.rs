//! Checkpoints in safetensors, with the DARTS reference's state_dict names (SPEC section 1), so a
//! PyTorch `load_state_dict` of the search model accepts them and PyTorch's files load here.
//!
//! A search checkpoint adds the optimizer state (`optimizer.momentum.{name}`, `optimizer.adam_m.*`,
//! `optimizer.adam_v.*`) and, in the safetensors metadata, the configuration, the position (epoch,
//! step, Adam step), the running epoch sums and the history. Every write goes to a temporary file in
//! the same directory and is renamed over the target, so a crash never leaves a half-written file.
//!
//! Every file written here carries, in its metadata, the CRC-32 of each tensor's bytes
//! (`checksums`) and of the other metadata (`metadata_crc32`), and the writer's version
//! (`writer`); [`TensorFile::open`] verifies them and names the first tensor that fails, so bit rot
//! or a bad copy is refused instead of resumed. Files without checksums (PyTorch's) load, every
//! value checked finite. Search and training checkpoints keep the one before them
//! (`checkpoint.prev.safetensors`, rotated by rename), and [`load_with_fallback`] resumes from it
//! when the latest fails its check.
use crate::error::io;
use crate::evalnet::{EvalConfig, EvalNet};
use crate::model::{NetConfig, Supernet};
use crate::params::{BnStore, ParamStore};
use crate::train::Trained;
use crate::Genotype;
use crate::{DartsError, Result};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tensor::{Rng, Tensor};

/// The alphas' names in the reference state_dict, in `[normal, reduce]` order.
pub const ALPHA_NAMES: [&str; 2] = ["alphas_normal", "alphas_reduce"];

/// A tensor to write: f32 data or an i64 scalar (`num_batches_tracked`).
enum Entry {
    F32(Vec<usize>, Vec<u8>),
    I64(i64),
}

fn f32_entry(t: &Tensor) -> Entry {
    Entry::F32(t.dims().to_vec(), t.as_bytes().to_vec())
}

/// The model's tensors under reference names: weights and BN buffers.
fn model_entries(params: &ParamStore, bns: &BnStore) -> BTreeMap<String, Entry> {
    let mut m = BTreeMap::new();
    for (n, v) in params.names.iter().zip(&params.values) {
        m.insert(n.clone(), f32_entry(v));
    }
    for ((p, s), &nb) in bns
        .prefixes
        .iter()
        .zip(&bns.stats)
        .zip(&bns.batches_tracked)
    {
        let c = s.mean.len();
        m.insert(
            format!("{p}.running_mean"),
            f32_entry(&Tensor::from_vec([c], s.mean.clone()).expect("len c")),
        );
        m.insert(
            format!("{p}.running_var"),
            f32_entry(&Tensor::from_vec([c], s.var.clone()).expect("len c")),
        );
        m.insert(format!("{p}.num_batches_tracked"), Entry::I64(nb));
    }
    m
}

/// A checkpoint being assembled: tensors by name and metadata entries. The states that own what
/// a checkpoint holds ([`crate::Search::save`], [`crate::train::Trainer::save`], the optimizers) add their parts;
/// [`Checkpoint::write_rotating`] writes it atomically with checksums.
#[derive(Default)]
pub struct Checkpoint {
    entries: BTreeMap<String, Entry>,
    metadata: HashMap<String, String>,
}

impl Checkpoint {
    /// An empty checkpoint of format `format` (a [`TensorFile::expect_format`] reads it back).
    pub fn new(format: &str) -> Checkpoint {
        let mut c = Checkpoint::default();
        c.metadata.insert("format".into(), format.into());
        c
    }

    /// Adds a tensor.
    pub fn tensor(&mut self, name: String, t: &Tensor) {
        self.entries.insert(name, f32_entry(t));
    }

    /// Adds a model's weights and BN buffers under their reference names.
    pub fn model(&mut self, params: &ParamStore, bns: &BnStore) {
        self.entries.extend(model_entries(params, bns));
    }

    /// Adds a search model: weights, BN buffers and both alphas, as the reference state_dict.
    pub fn supernet(&mut self, params: &ParamStore, bns: &BnStore, alphas: &[Tensor; 2]) {
        self.model(params, bns);
        for (name, a) in ALPHA_NAMES.iter().zip(alphas) {
            self.tensor(name.to_string(), a);
        }
    }

    /// Adds a metadata entry, as JSON.
    pub fn meta<T: serde::Serialize + ?Sized>(&mut self, key: &str, value: &T) {
        self.metadata.insert(key.into(), json(value));
    }

    /// Writes it atomically, keeping the file it replaces as [`previous`]`(path)`.
    pub fn write_rotating(self, path: &Path) -> Result<()> {
        write_rotating(path, &serialize(&self.entries, self.metadata, path)?)
    }

    /// Writes it atomically.
    pub fn write(self, path: &Path) -> Result<()> {
        write_atomic(path, &serialize(&self.entries, self.metadata, path)?)
    }
}

/// Writes `bytes` to `path` atomically (temporary file in the same directory, then rename).
/// On failure (a full disk, a read-only directory) the temporary file is removed and `path` keeps
/// its previous contents.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = std::fs::write(&tmp, bytes)
        .map_err(io(&tmp))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(io(path)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The metadata keys of the integrity fields.
const CHECKSUMS: &str = "checksums";
const METADATA_CRC: &str = "metadata_crc32";
const WRITER: &str = "writer";

fn crc32(bytes: &[u8]) -> String {
    format!("{:08x}", crc32fast::hash(bytes))
}

/// CRC-32 over the metadata entries other than the checksum fields, in key order.
fn metadata_crc(metadata: &HashMap<String, String>) -> String {
    let mut h = crc32fast::Hasher::new();
    let mut keys: Vec<&String> = metadata
        .keys()
        .filter(|k| *k != CHECKSUMS && *k != METADATA_CRC)
        .collect();
    keys.sort();
    for k in keys {
        for part in [k.as_bytes(), b"\0", metadata[k].as_bytes(), b"\0"] {
            h.update(part);
        }
    }
    format!("{:08x}", h.finalize())
}

/// The previous checkpoint kept beside `path`: `checkpoint.prev.safetensors`.
pub fn previous(path: &Path) -> std::path::PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|s| format!(".{}", s.to_string_lossy()))
        .unwrap_or_default();
    path.with_file_name(format!("{stem}.prev{ext}"))
}

/// Writes `bytes` to `path` keeping the file it replaces as [`previous`]: the new file is written
/// in full first (temporary name), then the old one renamed to `.prev`, then the new one into
/// place. A crash at any moment leaves at least one complete checkpoint (`path`, or `.prev` with
/// the new one still under its temporary name); a failed write leaves both as they were.
pub fn write_rotating(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = std::fs::write(&tmp, bytes)
        .map_err(io(&tmp))
        .and_then(|()| match path.exists() {
            true => std::fs::rename(path, previous(path)).map_err(io(previous(path))),
            false => Ok(()),
        })
        .and_then(|()| std::fs::rename(&tmp, path).map_err(io(path)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Loads `path` with `load`; if that fails (damaged, truncated, missing) and the previous
/// checkpoint loads, returns it with a warning that says why the latest was refused.
pub fn load_with_fallback<T>(
    path: &Path,
    load: impl Fn(&Path) -> Result<T>,
) -> Result<(T, Option<String>)> {
    match load(path) {
        Ok(v) => Ok((v, None)),
        Err(latest) => {
            let prev = previous(path);
            if !prev.exists() {
                return Err(latest);
            }
            match load(&prev) {
                Ok(v) => Ok((v, Some(format!("{latest}; resuming from the previous checkpoint {} instead (the epoch after it runs again)", prev.display())))),
                Err(e) => Err(DartsError::Checkpoint { path: path.into(), why: format!("{latest}; and the previous checkpoint failed too: {e}") }),
            }
        }
    }
}

fn serialize(
    entries: &BTreeMap<String, Entry>,
    mut metadata: HashMap<String, String>,
    path: &Path,
) -> Result<Vec<u8>> {
    let i64_bytes: BTreeMap<&String, [u8; 8]> = entries
        .iter()
        .filter_map(|(k, e)| {
            if let Entry::I64(v) = e {
                Some((k, v.to_le_bytes()))
            } else {
                None
            }
        })
        .collect();
    let checksums: BTreeMap<&String, String> = entries
        .iter()
        .map(|(k, e)| {
            let crc = match e {
                Entry::F32(_, data) => crc32(data),
                Entry::I64(_) => crc32(&i64_bytes[k]),
            };
            (k, crc)
        })
        .collect();
    metadata.insert(
        WRITER.into(),
        format!("darts-maxw {}", env!("CARGO_PKG_VERSION")),
    );
    metadata.insert(METADATA_CRC.into(), metadata_crc(&metadata));
    metadata.insert(CHECKSUMS.into(), json(&checksums));
    let views: Vec<(String, TensorView)> = entries
        .iter()
        .map(|(k, e)| {
            let view = match e {
                Entry::F32(shape, data) => TensorView::new(Dtype::F32, shape.clone(), data),
                Entry::I64(_) => TensorView::new(Dtype::I64, vec![], &i64_bytes[k]),
            };
            view.map(|v| (k.clone(), v))
        })
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| DartsError::Checkpoint {
            path: path.into(),
            why: format!("cannot serialise: {e}"),
        })?;
    safetensors::serialize(views, Some(metadata)).map_err(|e| DartsError::Checkpoint {
        path: path.into(),
        why: format!("cannot serialise: {e}"),
    })
}

/// Saves named tensors alone, e.g. for `darts grad` outputs.
pub fn save_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let mut c = Checkpoint::default();
    for (n, t) in tensors {
        c.tensor(n.clone(), t);
    }
    c.write(path)
}

/// Saves a search model alone (weights, BN buffers, alphas under the reference names, as
/// [`load_supernet`] and PyTorch's `load_state_dict` read them), e.g. for `darts replay`.
pub fn save_supernet(
    path: &Path,
    params: &ParamStore,
    bns: &BnStore,
    alphas: &[Tensor; 2],
) -> Result<()> {
    let mut c = Checkpoint::default();
    c.supernet(params, bns, alphas);
    c.write(path)
}

fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("metadata serialises")
}

/// An opened safetensors file: its tensors as f32 (or i64 scalars) by name, and its metadata.
pub struct TensorFile {
    /// The file, for error messages.
    pub path: std::path::PathBuf,
    /// Its f32 tensors by name.
    pub f32s: BTreeMap<String, Tensor>,
    /// Its integer tensors (i64 or i32, widened) by name.
    pub i64s: BTreeMap<String, Vec<i64>>,
    /// Its safetensors metadata.
    pub metadata: HashMap<String, String>,
}

impl TensorFile {
    /// Reads and checks a safetensors file: every checksum it carries, every value finite.
    pub fn open(path: &Path) -> Result<TensorFile> {
        let bytes = std::fs::read(path).map_err(io(path))?;
        let bad = |why: String| DartsError::Checkpoint {
            path: path.into(),
            why,
        };
        let (_, meta) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let mut f = TensorFile {
            path: path.into(),
            f32s: BTreeMap::new(),
            i64s: BTreeMap::new(),
            metadata: meta.metadata().clone().unwrap_or_default(),
        };
        if let Some(sums) = f.metadata.get(CHECKSUMS) {
            let sums: BTreeMap<String, String> = serde_json::from_str(sums).map_err(|e| {
                bad(format!(
                    "its checksums are unreadable ({e}): the file is damaged"
                ))
            })?;
            let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
            names.sort();
            for name in &names {
                let view = st
                    .tensor(name)
                    .map_err(|e| bad(format!("tensor {name}: {e}")))?;
                match sums.get(name) {
                    Some(want) if *want == crc32(view.data()) => {}
                    Some(_) => {
                        return Err(bad(format!(
                            "tensor {name} fails its checksum: the file is damaged"
                        )))
                    }
                    None => {
                        return Err(bad(format!(
                            "tensor {name} has no checksum: the file is damaged"
                        )))
                    }
                }
            }
            if let Some(missing) = sums.keys().find(|k| !names.contains(k)) {
                return Err(bad(format!(
                    "tensor {missing} is missing: the file is damaged"
                )));
            }
            if f.metadata.get(METADATA_CRC) != Some(&metadata_crc(&f.metadata)) {
                return Err(bad(
                    "its metadata fails its checksum: the file is damaged".into()
                ));
            }
        }
        for (name, view) in st.tensors() {
            match view.dtype() {
                Dtype::F32 => {
                    let v = view
                        .data()
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                        .collect();
                    f.f32s
                        .insert(name, Tensor::from_vec(view.shape().to_vec(), v)?);
                }
                Dtype::I64 => {
                    f.i64s.insert(
                        name,
                        view.data()
                            .chunks_exact(8)
                            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                            .collect(),
                    );
                }
                Dtype::I32 => {
                    f.i64s.insert(
                        name,
                        view.data()
                            .chunks_exact(4)
                            .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as i64)
                            .collect(),
                    );
                }
                other => {
                    return Err(bad(format!(
                        "tensor {name} has dtype {other:?}; only F32, I64 and I32 are supported"
                    )))
                }
            }
        }
        // Nothing we read may hold NaN or infinity: a damaged file, or one a diverged run wrote.
        for (name, t) in &f.f32s {
            if let Some(i) = t.data().iter().position(|v| !v.is_finite()) {
                return Err(bad(format!(
                    "tensor {name} holds a non-finite value ({}) at flat index {i}",
                    t.data()[i]
                )));
            }
        }
        Ok(f)
    }

    /// Refuses a file whose metadata `format` is not `format` (`what` names the kind of file).
    pub fn expect_format(&self, format: &str, what: &str) -> Result<()> {
        if self.metadata.get("format").map(String::as_str) == Some(format) {
            return Ok(());
        }
        Err(self.err(format!(
            "not a {what} of this program (metadata format is not '{format}')"
        )))
    }

    /// An error about this file.
    pub fn err(&self, why: String) -> DartsError {
        DartsError::Checkpoint {
            path: self.path.clone(),
            why,
        }
    }

    /// Removes and returns f32 tensor `name`, which must have shape `dims`.
    pub fn take(&mut self, name: &str, dims: &[usize]) -> Result<Tensor> {
        let t = self
            .f32s
            .remove(name)
            .ok_or_else(|| self.err(format!("missing tensor {name} (shape {dims:?})")))?;
        if t.dims() != dims {
            return Err(self.err(format!(
                "tensor {name} has shape {:?}, the model needs {dims:?}",
                t.dims()
            )));
        }
        Ok(t)
    }

    /// Metadata entry `key`, parsed from JSON.
    pub fn meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T> {
        let s = self.metadata.get(key).ok_or_else(|| {
            self.err(format!(
                "metadata '{key}' missing (not a search checkpoint of this program?)"
            ))
        })?;
        serde_json::from_str(s).map_err(|e| self.err(format!("metadata '{key}' is invalid: {e}")))
    }
}

/// Fills a freshly built model's tensors from `f`, removing them from it. Every model tensor must be
/// present with the right shape. `num_batches_tracked` entries are optional (as PyTorch treats them).
pub(crate) fn fill_model(
    f: &mut TensorFile,
    params: &mut ParamStore,
    bns: &mut BnStore,
    alphas: &mut [Tensor; 2],
) -> Result<()> {
    fill_params(f, params, bns)?;
    for (name, a) in ALPHA_NAMES.iter().zip(alphas.iter_mut()) {
        *a = f.take(name, a.dims())?;
    }
    Ok(())
}

pub(crate) fn fill_params(
    f: &mut TensorFile,
    params: &mut ParamStore,
    bns: &mut BnStore,
) -> Result<()> {
    for (n, v) in params.names.iter().zip(params.values.iter_mut()) {
        *v = f.take(n, v.dims())?;
    }
    for ((p, s), nb) in bns
        .prefixes
        .iter()
        .zip(bns.stats.iter_mut())
        .zip(bns.batches_tracked.iter_mut())
    {
        let c = s.mean.len();
        s.mean = f.take(&format!("{p}.running_mean"), &[c])?.into_vec();
        s.var = f.take(&format!("{p}.running_var"), &[c])?.into_vec();
        let tracked = format!("{p}.num_batches_tracked");
        if let Some(v) = f.i64s.remove(&tracked) {
            *nb = v.first().copied().unwrap_or(0);
        } else if let Some(t) = f.f32s.remove(&tracked) {
            // Some exporters store the counter as a float; accept a whole, non-negative one.
            match t.data() {
                [v] if *v >= 0.0 && v.fract() == 0.0 => *nb = *v as i64,
                other => {
                    return Err(f.err(format!(
                        "{tracked} must be one non-negative whole number, got {other:?}"
                    )))
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn no_leftovers(f: &TensorFile) -> Result<()> {
    let extra: Vec<&String> = f.f32s.keys().chain(f.i64s.keys()).take(5).collect();
    if extra.is_empty() {
        Ok(())
    } else {
        Err(f.err(format!(
            "{} unexpected tensor(s), e.g. {extra:?}: the file does not match the model layout",
            f.f32s.len() + f.i64s.len()
        )))
    }
}

/// A supernet loaded from any file with the reference names (ours, or a PyTorch state_dict plus the
/// two alpha tensors): the layout (C, layers, classes, input channels) is inferred from
/// `stem.0.weight`, `classifier.weight` and the highest `cells.{i}` index, then every tensor is
/// checked against it. Optimizer entries of our search checkpoints are ignored.
pub fn load_supernet(path: &Path) -> Result<(Supernet, ParamStore, BnStore, [Tensor; 2])> {
    let mut f = TensorFile::open(path)?;
    f.f32s.retain(|k, _| !k.starts_with("optimizer."));
    let stem = f.f32s.get("stem.0.weight").ok_or_else(|| {
        f.err("missing tensor stem.0.weight (is this a DARTS search model?)".into())
    })?;
    let fc = f
        .f32s
        .get("classifier.weight")
        .ok_or_else(|| f.err("missing tensor classifier.weight".into()))?;
    let (sd, fd) = (stem.dims().to_vec(), fc.dims().to_vec());
    if sd.len() != 4 || sd[0] % 3 != 0 || fd.len() != 2 {
        return Err(f.err(format!(
            "stem.0.weight {sd:?} / classifier.weight {fd:?} do not describe a DARTS search model"
        )));
    }
    let layers = f
        .f32s
        .keys()
        .filter_map(|k| {
            k.strip_prefix("cells.")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .map_or(0, |m| m + 1);
    let cfg = NetConfig {
        channels: sd[0] / 3,
        layers,
        classes: fd[0],
        in_channels: sd[1],
    };
    let mut init = Supernet::init(cfg, &mut Rng::new(0))
        .map_err(|e| f.err(format!("inferred layout {cfg:?} is invalid: {e}")))?;
    fill_model(&mut f, &mut init.params, &mut init.bns, &mut init.alphas)?;
    no_leftovers(&f)?;
    Ok((init.net, init.params, init.bns, init.alphas))
}

const MODEL_FORMAT: &str = "darts-maxw-model-v1";

/// Saves a trained evaluation network: weights and BN buffers under the reference `model.py`
/// names (loadable by PyTorch's `load_state_dict`), with its genotype and size in the metadata.
pub fn save_model(path: &Path, net: &EvalNet, params: &ParamStore, bns: &BnStore) -> Result<()> {
    let mut c = Checkpoint::new(MODEL_FORMAT);
    c.model(params, bns);
    c.meta("genotype", &net.genotype);
    c.meta("net", &net.config);
    c.metadata
        .insert("genotype_python".into(), net.genotype.to_python());
    c.write(path)
}

/// Loads a model written by [`save_model`]; every tensor must match the network its metadata
/// describes.
pub fn load_model(path: &Path) -> Result<Trained> {
    let mut f = TensorFile::open(path)?;
    f.expect_format(MODEL_FORMAT, "model file")?;
    let genotype: Genotype = f.meta("genotype")?;
    genotype.validate().map_err(|e| f.err(e.to_string()))?;
    let cfg: EvalConfig = f.meta("net")?;
    let mut init = EvalNet::init(cfg, &genotype, &mut Rng::new(0))?;
    fill_params(&mut f, &mut init.params, &mut init.bns)?;
    no_leftovers(&f)?;
    Ok(Trained::new(init.net, init.params, init.bns))
}
