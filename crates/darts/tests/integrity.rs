//! Files that cannot lie: checksums refuse damaged checkpoints (naming the tensor), the previous
//! checkpoint is kept and used as a fallback, and every reader survives arbitrary and mutated bytes
//! (proptest fuzzing: an error or a value, never a panic, never a huge allocation from a header).
use darts::checkpoint::{
    load_model, load_supernet, load_with_fallback, previous, save_model, save_supernet,
    save_tensors, TensorFile,
};
use darts::data::{load_cifar10, load_idx, synthetic, SyntheticConfig};
use darts::train::Trainer;
use darts::{Genotype, Search, SearchConfig};
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// The error of a load that must fail (`Search` has no Debug for `unwrap_err`).
fn err<T>(r: darts::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("darts-integrity-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A tiny search run for `epochs` epochs, saved to `path` after each (so `.prev` exists).
fn tiny_search(path: &Path, epochs: usize) -> Search {
    let data = synthetic(SyntheticConfig {
        train: 32,
        test: 0,
        seed: 1,
    })
    .train;
    let cfg = SearchConfig {
        channels: 2,
        layers: 2,
        epochs,
        batch: 4,
        seed: 3,
        ..Default::default()
    };
    let mut s = Search::new(cfg, data.classes, data.channels).unwrap();
    s.run(&data, &AtomicBool::new(false), &mut |e| {
        if let darts::Event::Epoch(s) = e {
            s.save(path).unwrap();
        }
    })
    .unwrap();
    s
}

/// The byte range of tensor `name`'s data in a safetensors file.
fn tensor_range(bytes: &[u8], name: &str) -> std::ops::Range<usize> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let off = &header[name]["data_offsets"];
    8 + n + off[0].as_u64().unwrap() as usize..8 + n + off[1].as_u64().unwrap() as usize
}

#[test]
fn a_damaged_tensor_is_refused_by_name_and_the_previous_checkpoint_takes_over() {
    let d = dir("damage");
    let ckpt = d.join("checkpoint.safetensors");
    let s = tiny_search(&ckpt, 2);
    assert!(previous(&ckpt).exists(), "the epoch-1 checkpoint is kept");
    let good = std::fs::read(&ckpt).unwrap();
    let meta = TensorFile::open(&ckpt).unwrap().metadata;
    assert!(meta.contains_key("checksums") && meta["writer"].starts_with("darts-maxw "));

    // One bit of one weight flipped: a finite value still, so only the checksum can tell.
    let name = "cells.0._ops.0._ops.4.op.1.weight";
    let mut bad = good.clone();
    let r = tensor_range(&bad, name);
    bad[r.start + 5] ^= 0x01;
    std::fs::write(&ckpt, &bad).unwrap();
    let e = err(Search::load(&ckpt));
    assert!(
        e.contains(&format!("tensor {name} fails its checksum"))
            && e.contains("checkpoint.safetensors"),
        "{e}"
    );
    let (back, warning) = load_with_fallback(&ckpt, Search::load).unwrap();
    assert!(warning
        .unwrap()
        .contains("resuming from the previous checkpoint"));
    assert_eq!(
        back.position().0,
        1,
        "the previous checkpoint is the epoch before"
    );

    // Damaged metadata (the position) is refused too.
    let mut bad = good.clone();
    let at = bad.windows(9).position(|w| w == b"\"epoch\":\"").unwrap() + 9;
    bad[at] = if bad[at] == b'1' { b'2' } else { b'1' };
    std::fs::write(&ckpt, &bad).unwrap();
    assert!(err(Search::load(&ckpt)).contains("metadata fails its checksum"));

    // Both damaged: the error says so.
    std::fs::write(previous(&ckpt), &bad).unwrap();
    assert!(err(load_with_fallback(&ckpt, Search::load)).contains("previous checkpoint failed too"));

    // Intact, it is the finished search.
    std::fs::write(&ckpt, &good).unwrap();
    assert_eq!(Search::load(&ckpt).unwrap().alphas(), s.alphas());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn files_without_checksums_load_but_non_finite_values_are_refused_by_name() {
    let d = dir("foreign");
    let ckpt = d.join("checkpoint.safetensors");
    tiny_search(&ckpt, 1);
    // A PyTorch-style file: the same tensors, no metadata at all.
    let f = TensorFile::open(&ckpt).unwrap();
    let mut tensors: Vec<(String, tensor::Tensor)> = f
        .f32s
        .iter()
        .filter(|(k, _)| !k.starts_with("optimizer."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let plain = d.join("plain.safetensors");
    let bytes = {
        save_tensors(&plain, &tensors).unwrap();
        std::fs::read(&plain).unwrap()
    };
    // save_tensors adds checksums; strip the metadata to get a foreign file.
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header.as_object_mut().unwrap().remove("__metadata__");
    let h = serde_json::to_vec(&header).unwrap();
    let mut foreign = (h.len() as u64).to_le_bytes().to_vec();
    foreign.extend_from_slice(&h);
    foreign.extend_from_slice(&bytes[8 + n..]);
    let foreign_path = d.join("foreign.safetensors");
    std::fs::write(&foreign_path, &foreign).unwrap();
    assert!(TensorFile::open(&foreign_path).unwrap().metadata.is_empty());
    load_supernet(&foreign_path).unwrap();

    let (name, t) = &mut tensors[0];
    let mut v = t.data().to_vec();
    v[0] = f32::INFINITY;
    *t = tensor::Tensor::from_vec(t.dims().to_vec(), v).unwrap();
    let name = name.clone();
    save_tensors(&plain, &tensors).unwrap();
    let e = load_supernet(&plain).unwrap_err().to_string();
    assert!(
        e.contains(&format!("tensor {name} holds a non-finite value (inf)")),
        "{e}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

/// A file of another kind, a model with a tensor too many, and a float `num_batches_tracked`
/// (whole and non-negative: accepted; anything else: refused by name); and a search model saved
/// alone (`save_supernet`) reloads to the same bits.
#[test]
fn other_kinds_extra_tensors_and_float_counters_are_named() {
    let d = dir("kinds");
    let ckpt = d.join("checkpoint.safetensors");
    tiny_search(&ckpt, 1);
    let e = err(load_model(&ckpt));
    assert!(
        e.contains(
            "not a model file of this program (metadata format is not 'darts-maxw-model-v1')"
        ),
        "{e}"
    );

    let (_, params, bns, alphas) = load_supernet(&ckpt).unwrap();
    let alone = d.join("supernet.safetensors");
    save_supernet(&alone, &params, &bns, &alphas).unwrap();
    let (_, p2, b2, a2) = load_supernet(&alone).unwrap();
    let bits = |ts: &[tensor::Tensor]| -> Vec<u32> {
        ts.iter()
            .flat_map(|t| t.data().iter().map(|v| v.to_bits()))
            .collect()
    };
    assert_eq!(p2.names, params.names);
    assert_eq!(bits(&p2.values), bits(&params.values));
    assert_eq!(bits(&a2), bits(&alphas));
    assert_eq!(b2.batches_tracked, bns.batches_tracked);

    // The same tensors as a plain file (no integer counters: they are optional), plus extras.
    let f = TensorFile::open(&alone).unwrap();
    assert!(f.i64s.keys().any(|k| k.ends_with(".num_batches_tracked")));
    let counter = format!("{}.num_batches_tracked", bns.prefixes[1]);
    let tensors: Vec<(String, tensor::Tensor)> =
        f.f32s.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let plain = d.join("plain.safetensors");
    let with = |extra: &[(&str, Vec<f32>)]| {
        let mut t = tensors.clone();
        for (name, v) in extra {
            t.push((
                name.to_string(),
                tensor::Tensor::from_vec(vec![v.len()], v.clone()).unwrap(),
            ));
        }
        save_tensors(&plain, &t).unwrap();
        load_supernet(&plain)
    };
    let (_, _, b, _) = with(&[]).unwrap();
    assert!(b.batches_tracked.iter().all(|&n| n == 0));
    let (_, _, b, _) = with(&[(counter.as_str(), vec![7.0])]).unwrap();
    assert_eq!(b.batches_tracked[1], 7);
    assert!(b
        .batches_tracked
        .iter()
        .enumerate()
        .all(|(i, &n)| i == 1 || n == 0));
    for bad in [vec![-1.0], vec![2.5], vec![1.0, 2.0]] {
        let e = err(with(&[(counter.as_str(), bad.clone())]));
        assert!(
            e.contains(&format!(
                "{counter} must be one non-negative whole number, got {bad:?}"
            )),
            "{e}"
        );
    }
    // The layout is read off the stem and the classifier: shapes that describe no search model.
    for (name, dims) in [
        ("stem.0.weight", vec![5, 3, 3, 3]),
        ("stem.0.weight", vec![6, 27]),
        ("classifier.weight", vec![10]),
    ] {
        let mut t = tensors.clone();
        let n: usize = dims.iter().product();
        let at = t.iter().position(|(k, _)| k == name).unwrap();
        t[at].1 = tensor::Tensor::from_vec(dims, vec![0.5; n]).unwrap();
        save_tensors(&plain, &t).unwrap();
        let e = err(load_supernet(&plain));
        assert!(e.contains("do not describe a DARTS search model"), "{e}");
    }
    // A trained network saved and loaded: the same bits, the same genotype.
    let g = Genotype::builtin("DARTS_V2").unwrap();
    let cfg = darts::evalnet::EvalConfig {
        channels: 4,
        layers: 3,
        classes: 10,
        in_channels: 3,
        auxiliary: false,
    };
    let init = darts::evalnet::EvalNet::init(cfg, &g, &mut tensor::Rng::new(5)).unwrap();
    let model = d.join("model.safetensors");
    save_model(&model, &init.net, &init.params, &init.bns).unwrap();
    let back = load_model(&model).unwrap();
    assert_eq!(back.net.genotype, g);
    assert_eq!(bits(&back.params.values), bits(&init.params.values));
    let e = err(with(&[("cells.0.extra.weight", vec![1.0])]));
    assert!(
        e.contains("1 unexpected tensor(s), e.g. [\"cells.0.extra.weight\"]: the file does not match the model layout"),
        "{e}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

/// Applies up to 8 (position, byte) edits to `base`, and optionally truncates it.
fn mutate(base: &[u8], edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    let mut b = base.to_vec();
    for &(i, v) in edits {
        if !b.is_empty() {
            let i = i % b.len();
            b[i] = v;
        }
    }
    if let Some(c) = cut {
        b.truncate(c % (b.len() + 1));
    }
    b
}

fn small_checkpoint() -> Vec<u8> {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES
        .get_or_init(|| {
            let d = dir("fuzz-seed");
            let ckpt = d.join("checkpoint.safetensors");
            tiny_search(&ckpt, 1);
            let b = std::fs::read(&ckpt).unwrap();
            std::fs::remove_dir_all(&d).unwrap();
            b
        })
        .clone()
}

fn idx_file(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    v.extend_from_slice(body);
    v
}

/// An IDX dimension: small, a power of two whose products wrap around, the largest, or any.
fn dimension() -> impl Strategy<Value = u32> {
    prop_oneof![
        0u32..6,
        Just(4),
        Just(1 << 31),
        Just(1 << 16),
        Just(u32::MAX),
        any::<u32>()
    ]
}

fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Safetensors checkpoints, models, training checkpoints and batches: mutated real files and
    /// random bytes give an error or a value, never a panic.
    #[test]
    fn safetensors_readers_never_panic(
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in prop::option::of(any::<usize>()),
        random in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let d = dir(&format!("fuzz-st-{}", std::thread::current().name().unwrap_or("t").len()));
        let p = d.join("f.safetensors");
        for bytes in [mutate(&small_checkpoint(), &edits, cut), random.clone()] {
            std::fs::write(&p, &bytes).unwrap();
            let _ = TensorFile::open(&p);
            let _ = Search::load(&p);
            let _ = load_supernet(&p);
            let _ = load_model(&p);
            let _ = Trainer::load(&p);
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// IDX files, raw and gzip: hostile headers (boundary sizes whose products wrap around in 64
    /// bits, zeros, random u32s) and mutated bodies are refused without allocating what the header
    /// claims.
    #[test]
    fn idx_readers_never_panic(
        dims in prop::collection::vec(dimension(), 3),
        body in prop_oneof![Just(Vec::new()), prop::collection::vec(any::<u8>(), 0..200)],
        label_edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        gz in any::<bool>(),
    ) {
        let d = dir("fuzz-idx");
        let images = idx_file(0x803, &dims, &body);
        let labels = mutate(&idx_file(0x801, &[dims[0]], &vec![1u8; (dims[0] as usize).min(64)]), &label_edits, None);
        let (suffix, images, labels) = if gz { (".gz", gzip(&images), gzip(&labels)) } else { ("", images, labels) };
        std::fs::write(d.join(format!("train-images-idx3-ubyte{suffix}")), images).unwrap();
        std::fs::write(d.join(format!("train-labels-idx1-ubyte{suffix}")), labels).unwrap();
        // An error, or a valid value: every image there, as many labels, sides of at least 1.
        if let Ok(s) = load_idx(&d) {
            let t = &s.train;
            prop_assert!(t.height >= 1 && t.width >= 1);
            prop_assert_eq!(t.images.len() as u128, t.len() as u128 * t.height as u128 * t.width as u128);
            prop_assert_eq!(t.labels.len(), t.len());
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// CIFAR-10 binary batches with mutated labels, lengths and random bytes.
    #[test]
    fn cifar_reader_never_panics(
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in prop::option::of(0usize..3 * 3073),
    ) {
        let d = dir("fuzz-cifar");
        let mut rec = vec![3u8];
        rec.extend((0..3072).map(|i| (i % 256) as u8));
        let good = rec.repeat(2);
        for i in 1..=5 {
            let b = if i == 3 { mutate(&good, &edits, cut) } else { good.clone() };
            std::fs::write(d.join(format!("data_batch_{i}.bin")), b).unwrap();
        }
        std::fs::write(d.join("test_batch.bin"), mutate(&good, &edits, None)).unwrap();
        let _ = load_cifar10(&d);
        std::fs::remove_dir_all(&d).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Genotype JSON and the reference syntax (single calls and whole modules): arbitrary text and
    /// mutations of valid text.
    #[test]
    fn genotype_parsers_never_panic(
        text in ".{0,200}",
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in prop::option::of(any::<usize>()),
    ) {
        let g = Genotype::builtin("DARTS_V2").unwrap();
        let _ = Genotype::from_json(&text);
        let _ = Genotype::from_python(&text);
        let _ = Genotype::from_text(&text, None);
        for base in [g.to_json(), g.to_python(), format!("X = {}\nY = X\n", g.to_python())] {
            let m = String::from_utf8_lossy(&mutate(base.as_bytes(), &edits, cut)).into_owned();
            let _ = Genotype::from_json(&m);
            for g in [Genotype::from_python(&m), Genotype::from_text(&m, None), Genotype::from_text(&m, Some("Y"))].into_iter().flatten() {
                prop_assert!(g.validate().is_ok());
            }
        }
    }
}
