//! Genotypes: deriving the discrete cell from alphas (SPEC section 1), and reading and writing them as
//! JSON and in the reference `Genotype(normal=[...], normal_concat=[...], reduce=[...], reduce_concat=[...])` syntax.
use crate::primitives::{self, Primitive};
use crate::{DartsError, Result};
use serde::{Deserialize, Serialize};
use tensor::Tensor;

/// A cell: for each intermediate node, two (primitive, input) pairs; input 0 and 1 are the cell's
/// inputs, 2.. the earlier intermediate nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genotype {
    /// The normal cell: (primitive, input state) for each kept edge, two per node.
    pub normal: Vec<(Primitive, usize)>,
    /// Which states the normal cell's output concatenates (2..=5).
    pub normal_concat: Vec<usize>,
    /// The reduction cell's kept edges.
    pub reduce: Vec<(Primitive, usize)>,
    /// Which states the reduction cell's output concatenates.
    pub reduce_concat: Vec<usize>,
}

/// Row-wise softmax of an alpha matrix [edges, primitives], in f64.
fn softmax_rows(alpha: &Tensor) -> Vec<Vec<f64>> {
    alpha
        .data()
        .chunks(alpha.dims()[1])
        .map(|row| {
            let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
            let e: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|v| v / s).collect()
        })
        .collect()
}

/// The reference `_parse`: per node keep the 2 incoming edges with the largest non-`none` weight
/// (stable order on ties), and on each the strongest non-`none` primitive (first on ties).
fn parse_cell(alpha: &Tensor) -> Vec<(Primitive, usize)> {
    let w = softmax_rows(alpha);
    let strongest = |row: &[f64]| {
        (0..row.len())
            .filter(|&k| k != Primitive::None.column())
            .fold(None, |best: Option<usize>, k| match best {
                Some(b) if row[k] <= row[b] => Some(b),
                _ => Some(k),
            })
    };
    let mut gene = Vec::new();
    let (mut start, mut n) = (0, 2);
    for _ in 0..primitives::STEPS {
        let rows = &w[start..start + n];
        let mut edges: Vec<usize> = (0..n).collect();
        edges.sort_by(|&a, &b| {
            let sa = rows[a][strongest(&rows[a]).unwrap()];
            let sb = rows[b][strongest(&rows[b]).unwrap()];
            sb.total_cmp(&sa)
        });
        for &j in &edges[..2] {
            gene.push((Primitive::ALL[strongest(&rows[j]).unwrap()], j));
        }
        start += n;
        n += 1;
    }
    gene
}

/// Genotypes published with the DARTS reference code (`genotypes.py`), by name.
pub const BUILTIN: [(&str, &str); 2] = [
    ("DARTS_V1", "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])"),
    ("DARTS_V2", "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"),
];

impl Genotype {
    /// A built-in genotype by name (`DARTS_V1`, `DARTS_V2`; `DARTS` is V2).
    pub fn builtin(name: &str) -> Option<Genotype> {
        let name = if name == "DARTS" { "DARTS_V2" } else { name };
        BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| Genotype::from_python(s).expect("built-in genotypes parse"))
    }

    /// A genotype from `spec`: a built-in name; a file holding JSON (`genotype.json`), one
    /// `Genotype(...)` in the reference syntax, or a Python module defining genotypes (the
    /// `genotype.py` a search writes, the reference `genotypes.py`); `FILE:NAME` picks one of a
    /// module's genotypes by name.
    pub fn load(spec: &str) -> Result<Genotype> {
        if let Some(g) = Genotype::builtin(spec) {
            return Ok(g);
        }
        let (path, name) = match spec.rsplit_once(':') {
            Some((file, name))
                if !std::path::Path::new(spec).exists() && std::path::Path::new(file).exists() =>
            {
                (std::path::Path::new(file), Some(name))
            }
            _ => (std::path::Path::new(spec), None),
        };
        if !path.exists() {
            let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
            return Err(DartsError::Genotype(format!(
                "'{spec}' is neither a file nor a built-in genotype ({})",
                names.join(", ")
            )));
        }
        let text = std::fs::read_to_string(path).map_err(crate::error::io(path))?;
        Genotype::from_text(&text, name).map_err(|e| {
            DartsError::Genotype(format!(
                "{}: {}",
                path.display(),
                e.to_string().trim_start_matches("genotype: ")
            ))
        })
    }

    /// A genotype from a file's text: JSON, one `Genotype(...)`, or a Python module of named
    /// genotypes, of which `name` picks one (needed when it defines several).
    pub fn from_text(text: &str, name: Option<&str>) -> Result<Genotype> {
        if text.trim_start().starts_with('{') {
            return Genotype::from_json(text);
        }
        let named = python::module(text)?;
        let names = || {
            named
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let g = match (name, named.len()) {
            (None, 0) => return Genotype::from_python(text),
            (None, 1) => named[0].1.clone(),
            (Some(n), _) => match named.iter().find(|(k, _)| k == n) {
                Some((_, g)) => g.clone(),
                None => {
                    return Err(DartsError::Genotype(format!(
                        "defines no genotype '{n}' (it defines: {})",
                        if named.is_empty() {
                            "none".to_string()
                        } else {
                            names()
                        }
                    )))
                }
            },
            (None, k) => {
                return Err(DartsError::Genotype(format!(
                    "defines {k} genotypes ({}); pick one with FILE:NAME",
                    names()
                )))
            }
        };
        g.validate()?;
        Ok(g)
    }

    /// Derives the genotype of alphas_normal and alphas_reduce ([14, 8] each). The ranking uses
    /// softmax(alpha) whatever weighting the search used.
    pub fn derive(alphas_normal: &Tensor, alphas_reduce: &Tensor) -> Genotype {
        let concat: Vec<usize> = (2..2 + primitives::STEPS).collect();
        Genotype {
            normal: parse_cell(alphas_normal),
            normal_concat: concat.clone(),
            reduce: parse_cell(alphas_reduce),
            reduce_concat: concat,
        }
    }

    /// A cell pair drawn uniformly from the search space without `none` (the random baseline):
    /// each node takes two distinct inputs among its predecessors, each with a uniformly drawn
    /// primitive. The same seed gives the same genotype.
    pub fn random(seed: u64) -> Genotype {
        let mut rng = tensor::Rng::new(seed);
        let mut cell = || {
            let mut gene = Vec::with_capacity(2 * primitives::STEPS);
            for node in 0..primitives::STEPS {
                let mut inputs: Vec<usize> = (0..node + 2).collect();
                rng.shuffle(&mut inputs);
                for &input in &inputs[..2] {
                    let op = 1 + rng.below(Primitive::ALL.len() - 1); // column 0 is `none`
                    gene.push((Primitive::ALL[op], input));
                }
            }
            gene
        };
        let normal = cell();
        let reduce = cell();
        let concat: Vec<usize> = (2..2 + primitives::STEPS).collect();
        Genotype {
            normal,
            normal_concat: concat.clone(),
            reduce,
            reduce_concat: concat,
        }
    }

    /// The reference syntax, as `print(genotype)` shows it.
    pub fn to_python(&self) -> String {
        let ops = |v: &[(Primitive, usize)]| {
            v.iter()
                .map(|(o, i)| format!("('{o}', {i})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let ints = |v: &[usize]| {
            v.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "Genotype(normal=[{}], normal_concat=[{}], reduce=[{}], reduce_concat=[{}])",
            ops(&self.normal),
            ints(&self.normal_concat),
            ops(&self.reduce),
            ints(&self.reduce_concat)
        )
    }

    /// The genotype as pretty JSON (what `genotype.json` holds).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("genotypes serialise")
    }

    /// Parses JSON written by [`Genotype::to_json`] and validates it.
    pub fn from_json(s: &str) -> Result<Genotype> {
        let g: Genotype = serde_json::from_str(s)
            .map_err(|e| DartsError::Genotype(format!("invalid genotype JSON: {e}")))?;
        g.validate()?;
        Ok(g)
    }

    /// Parses the reference syntax: `Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3,
    /// 4, 5] or range(2, 6), reduce=[...], reduce_concat=...)`, optionally preceded by `NAME = `.
    pub fn from_python(s: &str) -> Result<Genotype> {
        let g = python::parse(s)?;
        g.validate()?;
        Ok(g)
    }

    /// Each node has two inputs from earlier states; concat indices exist. (Primitives are known by
    /// type: unknown names are refused where they are parsed.)
    pub fn validate(&self) -> Result<()> {
        for (name, gene, concat) in [
            ("normal", &self.normal, &self.normal_concat),
            ("reduce", &self.reduce, &self.reduce_concat),
        ] {
            if gene.is_empty() || gene.len() % 2 != 0 {
                return Err(DartsError::Genotype(format!(
                    "{name} has {} entries; needs two per node",
                    gene.len()
                )));
            }
            for (p, (_, input)) in gene.iter().enumerate() {
                let node = p / 2;
                if *input >= node + 2 {
                    return Err(DartsError::Genotype(format!(
                        "{name}[{p}]: node {node} cannot take input {input} (only 0..{})",
                        node + 1
                    )));
                }
            }
            let states = gene.len() / 2 + 2;
            if concat.is_empty() || concat.iter().any(|&c| c >= states) {
                return Err(DartsError::Genotype(format!(
                    "{name}_concat {concat:?} must be non-empty and below {states}"
                )));
            }
        }
        Ok(())
    }
}

/// A small recursive-descent parser for the reference syntax.
mod python {
    use super::{Genotype, Primitive};
    use crate::{DartsError, Result};

    struct P<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl P<'_> {
        fn err<T>(&self, what: &str) -> Result<T> {
            let near: String = String::from_utf8_lossy(&self.s[self.i.min(self.s.len())..])
                .chars()
                .take(24)
                .collect();
            Err(DartsError::Genotype(format!(
                "expected {what} at character {} (near \"{near}\")",
                self.i
            )))
        }
        fn ws(&mut self) {
            while self.i < self.s.len() && (self.s[self.i] as char).is_whitespace() {
                self.i += 1;
            }
        }
        fn eat(&mut self, tok: &str) -> bool {
            self.ws();
            if self.s[self.i..].starts_with(tok.as_bytes()) {
                self.i += tok.len();
                true
            } else {
                false
            }
        }
        fn expect(&mut self, tok: &str) -> Result<()> {
            if self.eat(tok) {
                Ok(())
            } else {
                self.err(&format!("'{tok}'"))
            }
        }
        fn ident(&mut self) -> Option<String> {
            self.ws();
            let start = self.i;
            while self.i < self.s.len()
                && ((self.s[self.i] as char).is_ascii_alphanumeric() || self.s[self.i] == b'_')
            {
                self.i += 1;
            }
            (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
        }
        fn int(&mut self) -> Result<usize> {
            self.ws();
            match self.ident().and_then(|t| t.parse().ok()) {
                Some(v) => Ok(v),
                None => self.err("a non-negative integer"),
            }
        }
        fn string(&mut self) -> Result<String> {
            self.ws();
            let Some(&q) = self.s.get(self.i).filter(|&&c| c == b'\'' || c == b'"') else {
                return self.err("a quoted primitive name");
            };
            self.i += 1;
            let start = self.i;
            while self.i < self.s.len() && self.s[self.i] != q {
                self.i += 1;
            }
            if self.i >= self.s.len() {
                return self.err("a closing quote");
            }
            self.i += 1;
            Ok(String::from_utf8_lossy(&self.s[start..self.i - 1]).into_owned())
        }
        /// [('op', 0), ('op', 1), ...]
        fn ops(&mut self) -> Result<Vec<(Primitive, usize)>> {
            self.expect("[")?;
            let mut v = Vec::new();
            while !self.eat("]") {
                if !v.is_empty() {
                    self.expect(",")?;
                    if self.eat("]") {
                        break;
                    }
                }
                self.expect("(")?;
                let name = self.string()?;
                let op = Primitive::parse(&name).ok_or_else(|| {
                    DartsError::Genotype(format!(
                        "unknown primitive '{name}' (known: {})",
                        Primitive::names()
                    ))
                })?;
                self.expect(",")?;
                let i = self.int()?;
                self.expect(")")?;
                v.push((op, i));
            }
            Ok(v)
        }
        /// [2, 3, 4, 5] or range(2, 6)
        fn concat(&mut self) -> Result<Vec<usize>> {
            if self.eat("range") {
                self.expect("(")?;
                let a = self.int()?;
                self.expect(",")?;
                let b = self.int()?;
                self.expect(")")?;
                return Ok((a..b).collect());
            }
            self.expect("[")?;
            let mut v = Vec::new();
            while !self.eat("]") {
                if !v.is_empty() {
                    self.expect(",")?;
                }
                v.push(self.int()?);
            }
            Ok(v)
        }
    }

    pub(super) fn parse(s: &str) -> Result<Genotype> {
        let s = s.trim();
        let body = match s.find("Genotype") {
            Some(i) => &s[i..],
            None => return Err(DartsError::Genotype("no 'Genotype(' found".into())),
        };
        Ok(call(body)?.0)
    }

    /// Parses the `Genotype(...)` call at the start of `body`; returns it and the bytes consumed.
    fn call(body: &str) -> Result<(Genotype, usize)> {
        let mut p = P {
            s: body.as_bytes(),
            i: 0,
        };
        p.expect("Genotype")?;
        p.expect("(")?;
        let (mut normal, mut nc, mut reduce, mut rc) = (None, None, None, None);
        loop {
            let Some(key) = p.ident() else {
                return p.err("a field name");
            };
            p.expect("=")?;
            match key.as_str() {
                "normal" => normal = Some(p.ops()?),
                "reduce" => reduce = Some(p.ops()?),
                "normal_concat" => nc = Some(p.concat()?),
                "reduce_concat" => rc = Some(p.concat()?),
                other => return Err(DartsError::Genotype(format!("unknown field '{other}'"))),
            }
            if p.eat(")") {
                break;
            }
            p.expect(",")?;
            if p.eat(")") {
                break;
            }
        }
        let missing = |f: &str| DartsError::Genotype(format!("missing field '{f}'"));
        let g = Genotype {
            normal: normal.ok_or_else(|| missing("normal"))?,
            normal_concat: nc.ok_or_else(|| missing("normal_concat"))?,
            reduce: reduce.ok_or_else(|| missing("reduce"))?,
            reduce_concat: rc.ok_or_else(|| missing("reduce_concat"))?,
        };
        Ok((g, p.i))
    }

    /// `NAME = value` at the start of a line (a top-level Python assignment): the name, and the
    /// value as a suffix of `line`.
    fn assignment(line: &str) -> Option<(&str, &str)> {
        if line.starts_with(char::is_whitespace) {
            return None;
        }
        let (name, value) = line.split_once('=')?;
        let name = name.trim();
        let ident = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        (ident && !value.starts_with('=')).then_some((name, value.trim_start()))
    }

    /// The genotypes a Python module defines at top level, in order: `NAME = Genotype(...)`
    /// (possibly over several lines) and aliases `NAME = OTHER` of an earlier one (as the reference
    /// `genotypes.py` has `DARTS = DARTS_V2`). Other statements (imports, `namedtuple`, `PRIMITIVES`
    /// lists) are skipped.
    pub(super) fn module(text: &str) -> Result<Vec<(String, Genotype)>> {
        let mut found: Vec<(String, Genotype)> = Vec::new();
        let mut pos = 0;
        while pos < text.len() {
            let rest = &text[pos..];
            let line = &rest[..rest.find('\n').map_or(rest.len(), |k| k + 1)];
            let mut advance = line.len();
            if let Some((name, value)) = assignment(line) {
                let is_call = value
                    .strip_prefix("Genotype")
                    .is_some_and(|v| v.trim_start().starts_with('('));
                if is_call {
                    let at = line.len() - value.len();
                    let (g, used) = call(&rest[at..]).map_err(|e| {
                        let why = e.to_string();
                        DartsError::Genotype(format!(
                            "{name}: {}",
                            why.trim_start_matches("genotype: ")
                        ))
                    })?;
                    found.push((name.to_string(), g));
                    // Continue after the line the call ends on.
                    let end = at + used;
                    advance = rest[end..].find('\n').map_or(rest.len(), |k| end + k + 1);
                } else if let Some((_, g)) = found.iter().find(|(n, _)| n == value.trim()) {
                    let g = g.clone();
                    found.push((name.to_string(), g));
                }
            }
            pos += advance;
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DARTS_PAPER: &str = "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])";

    /// Edges are ranked by their strongest non-`none` softmax weight, not by raw alphas. Node 1
    /// (rows 2-4): row 2 has a large `none` (5) and sep_conv_3x3 = 1 (raw 1, softmax 0.017), row 3
    /// sep_conv_5x5 = 0.5 (raw 0.5, softmax 0.19), row 4 all zero (raw 0, softmax 1/8 for
    /// max_pool_3x3, the first non-`none` on ties). Softmax keeps rows 3 and 4; raw would keep 2, 3.
    #[test]
    fn derivation_ranks_edges_by_softmax_not_raw_alphas() {
        let mut a = vec![0.0f32; 14 * 8];
        a[2 * 8] = 5.0;
        a[2 * 8 + 4] = 1.0;
        a[3 * 8 + 5] = 0.5;
        let alphas = Tensor::from_vec([14, 8], a).unwrap();
        let g = Genotype::derive(&alphas, &alphas);
        assert_eq!(
            g.normal[2..4],
            [(Primitive::SepConv5x5, 1), (Primitive::MaxPool3x3, 2)]
        );
    }

    #[test]
    fn python_modules_load_by_name() {
        /// Removes the directory when the test ends, passing or failing.
        struct Cleanup(std::path::PathBuf);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let dir = std::env::temp_dir().join(format!("darts-genotype-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _cleanup = Cleanup(dir.clone());
        let g = Genotype::builtin("DARTS_V1").unwrap();
        // What `darts search` writes.
        let searched = dir.join("genotype.py");
        std::fs::write(&searched, format!("from collections import namedtuple\nGenotype = namedtuple('Genotype', 'normal normal_concat reduce reduce_concat')\n\nSEARCHED = {}\n", g.to_python())).unwrap();
        assert_eq!(Genotype::load(searched.to_str().unwrap()).unwrap(), g);
        // The reference genotypes.py shape: several, multi-line, range() concat, an alias.
        let v2 = DARTS_PAPER
            .replace("), (", "),\n    (")
            .replace("normal_concat=[2, 3, 4, 5]", "normal_concat=range(2, 6)");
        let module = dir.join("genotypes.py");
        std::fs::write(&module, format!("from collections import namedtuple\n\nGenotype = namedtuple('Genotype', 'normal normal_concat reduce reduce_concat')\n\nPRIMITIVES = [\n    'none',\n    'max_pool_3x3',\n]\n\nDARTS_V1 = {}\nDARTS_V2 = {v2}\n\nDARTS = DARTS_V2\n", g.to_python())).unwrap();
        let m = module.to_str().unwrap();
        assert_eq!(Genotype::load(&format!("{m}:DARTS_V1")).unwrap(), g);
        assert_eq!(
            Genotype::load(&format!("{m}:DARTS")).unwrap(),
            Genotype::builtin("DARTS_V2").unwrap()
        );
        let e = Genotype::load(m).unwrap_err().to_string();
        assert!(
            e.contains("defines 3 genotypes (DARTS_V1, DARTS_V2, DARTS)") && e.contains(":NAME"),
            "{e}"
        );
        let e = Genotype::load(&format!("{m}:NASNet"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no genotype 'NASNet'"), "{e}");
        // A file whose own name holds a colon is that file, not FILE:NAME.
        // (Even when the part before the colon is a file too.)
        let colon = dir.join("cell:v1.json");
        std::fs::write(&colon, g.to_json()).unwrap();
        std::fs::write(dir.join("cell"), DARTS_PAPER).unwrap();
        assert_eq!(Genotype::load(colon.to_str().unwrap()).unwrap(), g);
    }

    /// Each rule of `validate` on its own: an even, non-empty gene list; inputs from earlier
    /// states; concat indices below the number of states (2 inputs + one per node).
    #[test]
    fn validate_names_each_broken_rule() {
        let ok = Genotype::builtin("DARTS_V2").unwrap();
        ok.validate().unwrap();
        let fails = |g: Genotype, words: &str| {
            let e = g.validate().unwrap_err().to_string();
            assert!(e.contains(words), "{e}");
        };
        let mut odd = ok.clone();
        odd.normal.pop();
        fails(odd, "normal has 7 entries");
        let mut empty = ok.clone();
        empty.reduce.clear();
        fails(empty, "reduce has 0 entries");
        let mut late = ok.clone();
        late.normal[2].1 = 3; // node 1 reads states 0..2
        fails(late, "normal[2]: node 1 cannot take input 3");
        let mut beyond = ok.clone();
        beyond.normal_concat = vec![2, 3, 4, 6]; // 8 genes: states 0..5
        fails(
            beyond,
            "normal_concat [2, 3, 4, 6] must be non-empty and below 6",
        );
        let mut none = ok.clone();
        none.reduce_concat.clear();
        fails(none, "reduce_concat [] must be non-empty");
        // An unknown primitive cannot be built: its name is refused where it is parsed.
        let e = Genotype::from_json(&ok.to_json().replace("skip_connect", "conv_7x1_1x7"));
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("unknown primitive 'conv_7x1_1x7'"));
    }

    #[test]
    fn random_cells_are_valid_reproducible_and_cover_the_space() {
        assert_eq!(Genotype::random(7), Genotype::random(7));
        assert_ne!(Genotype::random(7), Genotype::random(8));
        let mut ops = std::collections::BTreeSet::new();
        let mut inputs = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let g = Genotype::random(seed);
            g.validate().unwrap();
            for cell in [&g.normal, &g.reduce] {
                for (node, pair) in cell.chunks(2).enumerate() {
                    assert_ne!(pair[0].1, pair[1].1, "two distinct inputs per node");
                    inputs.insert((node, pair[0].1));
                }
                ops.extend(cell.iter().map(|(o, _)| *o));
            }
        }
        assert!(!ops.contains(&Primitive::None));
        assert_eq!(
            ops.len(),
            Primitive::ALL.len() - 1,
            "every other primitive is drawn"
        );
        assert_eq!(
            inputs.len(),
            2 + 3 + 4 + 5,
            "every (node, input) pair is drawn"
        );
    }

    #[test]
    fn parser_round_trips_the_darts_paper_cell() {
        let g = Genotype::from_python(DARTS_PAPER).unwrap();
        assert_eq!(g.normal[7], (Primitive::DilConv3x3, 2));
        assert_eq!(g.to_python(), DARTS_PAPER);
        assert_eq!(Genotype::from_json(&g.to_json()).unwrap(), g);
        let with_range = format!(
            "DARTS_V2 = {}",
            DARTS_PAPER
                .replace("normal_concat=[2, 3, 4, 5]", "normal_concat=range(2, 6)")
                .replace('\'', "\"")
        );
        assert_eq!(Genotype::from_python(&with_range).unwrap(), g);
    }

    #[test]
    fn builtins_parse_and_darts_v2_is_the_paper_cell() {
        assert_eq!(
            Genotype::builtin("DARTS_V2").unwrap().to_python(),
            DARTS_PAPER
        );
        assert_eq!(
            Genotype::builtin("DARTS_V1").unwrap().normal[7],
            (Primitive::SkipConnect, 2)
        );
        assert!(Genotype::load("NOT_A_GENOTYPE")
            .unwrap_err()
            .to_string()
            .contains("DARTS_V1"));
    }

    #[test]
    fn parser_reports_bad_input() {
        for (bad, want) in [
            ("Genotype(normal=[('sep_conv_7x7', 0), ('skip_connect', 1)], normal_concat=[2], reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])", "unknown primitive"),
            ("Genotype(normal=[('skip_connect', 0), ('skip_connect', 2)], normal_concat=[2], reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])", "cannot take input 2"),
            ("Genotype(normal=[('skip_connect', 0)", "expected"),
            ("Genotype(normal=[], normal_concat=[2])", "missing field"),
            ("nothing here", "no 'Genotype('"),
            // Input that ends inside a name or a number (read up to the last byte, not past it).
            ("Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)], normal_concat=range", "expected"),
            ("Genotype(normal=[('skip_connect', 0), ('skip_connect', 12", "expected"),
            ("Genotype(normal=[('skip_connect", "a closing quote"),
            ("Genotype(=[('skip_connect', 0)])", "a field name"),
        ] {
            let e = Genotype::from_python(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
        assert!(Genotype::from_json("{\"normal\": 3}").is_err());
    }

    fn alphas(entries: &[(usize, usize, f32)]) -> Tensor {
        let mut a = Tensor::zeros([14, 8]);
        for &(e, k, v) in entries {
            a.data_mut()[e * 8 + k] = v;
        }
        a
    }

    #[test]
    fn derivation_follows_the_reference_rules() {
        // Node 0 (edges 0, 1): edge 1 strongly sep_conv_5x5; `none` dominating edge 0 must not count.
        // Node 1 (edges 2, 3, 4): edges 4 (skip) and 2 (max_pool) beat edge 3.
        let a = alphas(&[
            (0, Primitive::None.column(), 9.0),
            (0, 6, 1.0),
            (1, 5, 3.0),
            (2, 1, 2.0),
            (3, 4, 0.5),
            (4, 3, 2.5),
        ]);
        let g = Genotype::derive(&a, &a);
        assert_eq!(
            &g.normal[..4],
            &[
                (Primitive::SepConv5x5, 1),
                (Primitive::DilConv3x3, 0),
                (Primitive::SkipConnect, 2),
                (Primitive::MaxPool3x3, 0)
            ]
        );
        // Nodes 2 and 3 have all-zero alphas: ties keep the lowest input and the first primitive.
        assert_eq!(
            &g.normal[4..],
            &[
                (Primitive::MaxPool3x3, 0),
                (Primitive::MaxPool3x3, 1),
                (Primitive::MaxPool3x3, 0),
                (Primitive::MaxPool3x3, 1)
            ]
        );
        assert_eq!(g.normal_concat, vec![2, 3, 4, 5]);
        g.validate().unwrap();
    }

    /// The derivation is shift-invariant per row and does not overflow for large alphas: the
    /// softmax subtracts each row's max before exponentiating (exp(900) is infinite in f64).
    #[test]
    fn derivation_is_shift_invariant_and_survives_large_alphas() {
        let a = alphas(&[
            (0, 6, 1.0),
            (1, 5, 3.0),
            (2, 1, 2.0),
            (3, 4, 0.5),
            (4, 3, 2.5),
        ]);
        let mut shifted = a.clone();
        shifted.data_mut().iter_mut().for_each(|v| *v += 450.0);
        assert_eq!(
            Genotype::derive(&shifted, &shifted),
            Genotype::derive(&a, &a)
        );
    }

    /// Only top-level `NAME = Genotype(...)` lines define genotypes: attribute assignments,
    /// names starting with a digit, comparisons and indented lines do not.
    #[test]
    fn modules_define_genotypes_only_by_plain_top_level_assignment() {
        let g = Genotype::builtin("DARTS_V1").unwrap().to_python();
        let v2 = Genotype::builtin("DARTS_V2").unwrap();
        let module = format!(
            "cfg.best = {g}\n1x = {g}\nONLY = {}\nONLY == {g}\n    INNER = {g}\nmy cell = {g}\n",
            v2.to_python()
        );
        assert_eq!(Genotype::from_text(&module, None).unwrap(), v2);
        assert!(Genotype::from_text(&module, Some("cfg.best")).is_err());
        // After a call, parsing resumes on the next line, whatever follows the call on its own.
        let comment = "#".repeat(3 * g.len());
        let module = format!("A = {g}  {comment}\nB = {}\n", v2.to_python());
        assert_eq!(Genotype::from_text(&module, Some("B")).unwrap(), v2);
        assert_eq!(
            Genotype::from_text(&module, Some("A")).unwrap(),
            Genotype::builtin("DARTS_V1").unwrap()
        );
    }
}
