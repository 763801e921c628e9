//! The ops against PyTorch: every value in tests/golden/ops.safetensors was produced by
//! `scripts/golden_ops.py` (PyTorch 2.15, CPU). Each case runs forward, then backward of
//! loss = sum(y * r) with the stored r, and compares y and the input gradients.
use autograd::{Tape, Tensor, Var};
use ops::*;
use safetensors::{Dtype, SafeTensors};

struct Golden(Vec<u8>);

impl Golden {
    fn load() -> Golden {
        Golden(
            std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/golden/ops.safetensors"
            ))
            .expect("golden file"),
        )
    }

    fn get(&self, name: &str) -> Tensor {
        let st = SafeTensors::deserialize(&self.0).unwrap();
        let t = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("golden tensor {name} missing"));
        assert_eq!(t.dtype(), Dtype::F32, "{name}");
        let v = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        Tensor::from_vec(t.shape().to_vec(), v).unwrap()
    }

    fn labels(&self, name: &str) -> Vec<u32> {
        let st = SafeTensors::deserialize(&self.0).unwrap();
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), Dtype::I64);
        t.data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
            .collect()
    }
}

fn assert_close(name: &str, got: &Tensor, want: &Tensor, tol: f32) {
    assert_eq!(got.dims(), want.dims(), "{name}: shape");
    for (i, (a, b)) in got.data().iter().zip(want.data()).enumerate() {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "{name}[{i}]: ours {a} vs PyTorch {b}"
        );
    }
}

/// Runs `f` on the case's inputs (as leaves), backprops sum(y * r) and compares y and every gradient.
fn run_case(g: &Golden, case: &str, inputs: &[&str], mut f: impl FnMut(&mut Tape, &[Var]) -> Var) {
    let mut tape = Tape::new();
    let vars: Vec<Var> = inputs
        .iter()
        .map(|n| tape.leaf(g.get(&format!("{case}.{n}")), true))
        .collect();
    let y = f(&mut tape, &vars);
    assert_close(
        &format!("{case}.y"),
        tape.value(y),
        &g.get(&format!("{case}.y")),
        2e-5,
    );
    let r = g.get(&format!("{case}.r"));
    let loss = dot_const(&mut tape, y, &r).unwrap();
    tape.backward(loss).unwrap();
    for (n, v) in inputs.iter().zip(&vars) {
        assert_close(
            &format!("{case}.g{n}"),
            tape.grad(*v).unwrap(),
            &g.get(&format!("{case}.g{n}")),
            2e-4,
        );
    }
}

fn conv(
    stride: usize,
    padding: usize,
    dilation: usize,
    groups: usize,
    pre_relu: bool,
) -> Conv2dOptions {
    Conv2dOptions {
        stride,
        padding,
        dilation,
        groups,
        pre_relu,
    }
}

#[test]
fn convolutions_match_pytorch() {
    let g = Golden::load();
    let cases = [
        ("conv_dense", conv(1, 1, 1, 1, false)),
        ("conv_strided_grouped", conv(2, 1, 1, 2, false)),
        ("conv_dilated", conv(1, 2, 2, 1, false)),
        ("conv_relu_pointwise_s2", conv(2, 0, 1, 1, true)),
    ];
    for (case, o) in cases {
        run_case(&g, case, &["x", "w"], |t, v| {
            conv2d(t, v[0], v[1], o).unwrap()
        });
    }
    run_case(&g, "depthwise_5x5_s2", &["x", "w"], |t, v| {
        depthwise_conv2d(t, v[0], v[1], conv(2, 2, 1, 1, false)).unwrap()
    });
    run_case(&g, "depthwise_dil_relu", &["x", "w"], |t, v| {
        depthwise_conv2d(t, v[0], v[1], conv(1, 2, 2, 1, true)).unwrap()
    });
}

#[test]
fn pools_match_pytorch() {
    let g = Golden::load();
    for (case, stride) in [("max_pool_s1", 1), ("max_pool_s2", 2)] {
        run_case(&g, case, &["x"], |t, v| {
            max_pool2d(
                t,
                v[0],
                PoolOptions {
                    kernel: 3,
                    stride,
                    padding: 1,
                },
            )
            .unwrap()
        });
    }
    for (case, stride) in [("avg_pool_s1", 1), ("avg_pool_s2", 2)] {
        run_case(&g, case, &["x"], |t, v| {
            avg_pool2d(
                t,
                v[0],
                PoolOptions {
                    kernel: 3,
                    stride,
                    padding: 1,
                },
            )
            .unwrap()
        });
    }
}

#[test]
fn batch_norm_matches_pytorch() {
    let g = Golden::load();
    let mut running = RunningStats {
        mean: g.get("bn_train.running_mean0").into_vec(),
        var: g.get("bn_train.running_var0").into_vec(),
    };
    run_case(&g, "bn_train", &["x", "gamma", "beta"], |t, v| {
        batch_norm(
            t,
            v[0],
            Some((v[1], v[2])),
            Some(&mut running),
            BatchNormOptions::default(),
        )
        .unwrap()
    });
    let want_mean = g.get("bn_train.running_mean1");
    let want_var = g.get("bn_train.running_var1");
    assert_close(
        "running_mean",
        &Tensor::from_vec([3], running.mean.clone()).unwrap(),
        &want_mean,
        1e-6,
    );
    assert_close(
        "running_var",
        &Tensor::from_vec([3], running.var.clone()).unwrap(),
        &want_var,
        1e-6,
    );

    let eval = RunningStats {
        mean: g.get("bn_train.running_mean0").into_vec(),
        var: g.get("bn_train.running_var0").into_vec(),
    };
    let o = BatchNormOptions {
        training: false,
        ..Default::default()
    };
    run_case(&g, "bn_eval", &["x", "gamma", "beta"], |t, v| {
        batch_norm(t, v[0], Some((v[1], v[2])), Some(&mut eval.clone()), o).unwrap()
    });
    run_case(&g, "bn_noaffine", &["x"], |t, v| {
        batch_norm(t, v[0], None, None, BatchNormOptions::default()).unwrap()
    });
}

#[test]
fn maxw_and_cross_entropy_match_pytorch() {
    let g = Golden::load();
    run_case(&g, "maxw", &["alpha"], |t, v| maxw(t, v[0]).unwrap());
    let labels = g.labels("cross_entropy.labels");
    run_case(&g, "cross_entropy", &["logits"], |t, v| {
        cross_entropy(t, v[0], &labels).unwrap()
    });
}
