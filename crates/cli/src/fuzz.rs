//! Fuzzing of the run-directory readers that live in the binary: `run.json` (`--resume`) and
//! `summary.json` (`darts report`), fed arbitrary and mutated bytes. Property: an error or a
//! value, never a panic.
use crate::report::page;
use crate::run_dir::RunInfo;
use proptest::prelude::*;

const RUN_JSON: &str = r#"{"data": "synthetic", "subset": 40, "command": ["darts", "search"], "data_fingerprint": "00ff00ff00ff00ff"}"#;

const SUMMARY_JSON: &str = r#"{"status": "finished", "seed": 3, "data": "synthetic", "threads": 2, "parameters": 1200,
 "command": ["darts", "search", "--epochs", "1"], "config": {"channels": 2, "lr": 0.025},
 "genotype": {"normal": [["sep_conv_3x3", 0], ["skip_connect", 1], ["sep_conv_3x3", 0], ["skip_connect", 1], ["sep_conv_3x3", 0], ["skip_connect", 1], ["sep_conv_3x3", 0], ["skip_connect", 1]], "normal_concat": [2, 3, 4, 5],
              "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1], ["max_pool_3x3", 0], ["max_pool_3x3", 1], ["max_pool_3x3", 0], ["max_pool_3x3", 1], ["max_pool_3x3", 0], ["max_pool_3x3", 1]], "reduce_concat": [2, 3, 4, 5]},
 "epochs": [{"epoch": 0, "lr": 0.025, "train_acc": 0.5, "val_acc": 0.25, "seconds": 1.5}]}"#;

fn mutate(base: &str, edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    let mut b = base.as_bytes().to_vec();
    for &(i, v) in edits {
        let i = i % b.len();
        b[i] = v;
    }
    if let Some(c) = cut {
        b.truncate(c % (b.len() + 1));
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn run_and_summary_readers_never_panic(
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in prop::option::of(any::<usize>()),
        random in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        let dir = std::env::temp_dir().join(format!("darts-cli-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for bytes in [mutate(RUN_JSON, &edits, cut), random.clone()] {
            std::fs::write(dir.join("run.json"), &bytes).unwrap();
            let _ = RunInfo::read(&dir);
        }
        for bytes in [mutate(SUMMARY_JSON, &edits, cut), random] {
            std::fs::write(dir.join("summary.json"), &bytes).unwrap();
            let _ = page(&dir);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn the_unmutated_files_read() {
    let dir = std::env::temp_dir().join(format!("darts-cli-fuzz-ok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("run.json"), RUN_JSON).unwrap();
    std::fs::write(dir.join("summary.json"), SUMMARY_JSON).unwrap();
    assert!(RunInfo::read(&dir).is_ok_and(|r| r.subset == Some(40)));
    assert!(page(&dir).ok().is_some_and(|h| h.contains("sep_conv_3x3")));
    std::fs::remove_dir_all(&dir).unwrap();
}
