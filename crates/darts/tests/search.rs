//! End-to-end behaviour of the search: learning, determinism across thread counts, resume, and the
//! second-order architecture gradient against finite differences.
use darts::architect::{self, VirtualStep};
use darts::checkpoint::load_supernet;
use darts::data::{synthetic, Dataset, SyntheticConfig};
use darts::pass::{PassOut, Want};
use darts::search::EpochRecord;
use darts::{Order, Outcome, Search, SearchConfig, Weighting};
use std::sync::atomic::AtomicBool;
use tensor::{Rng, Tensor};

/// Random 8x8 RGB images whose label is the brightest channel (learnable, tiny).
fn tiny_data(n: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let mut x = Tensor::randn([n, 3, 8, 8], 1.0, &mut rng);
    let labels: Vec<u32> = (0..n).map(|_| rng.below(3) as u32).collect();
    for (img, &l) in x.data_mut().chunks_mut(192).zip(&labels) {
        img[l as usize * 64..][..64]
            .iter_mut()
            .for_each(|v| *v += 1.0);
    }
    Dataset::from_tensors(&x, labels, 3).unwrap()
}

fn tiny_config() -> SearchConfig {
    SearchConfig {
        channels: 4,
        layers: 3,
        epochs: 2,
        batch: 8,
        seed: 11,
        ..Default::default()
    }
}

fn run(s: &mut Search, d: &Dataset) -> Outcome {
    s.run(d, &AtomicBool::new(false), &mut |_| {}).unwrap()
}

fn bits(s: &Search) -> Vec<u32> {
    let mut v: Vec<u32> = s
        .alphas()
        .iter()
        .flat_map(|a| a.data().iter().map(|f| f.to_bits()))
        .collect();
    v.extend(
        s.params()
            .values
            .iter()
            .flat_map(|p| p.data().iter().map(|f| f.to_bits())),
    );
    v
}

#[test]
fn short_search_on_builtin_data_learns_and_yields_a_valid_genotype() {
    let data = synthetic(SyntheticConfig {
        train: 320,
        test: 0,
        seed: 5,
    })
    .train;
    for weighting in [Weighting::Maxw, Weighting::Softmax] {
        let cfg = SearchConfig {
            channels: 4,
            layers: 3,
            epochs: 3,
            batch: 16,
            seed: 1,
            lr: 0.05,
            weighting,
            ..Default::default()
        };
        let mut s = Search::new(cfg, 10, 3).unwrap();
        let mut losses = Vec::new();
        s.run(&data, &AtomicBool::new(false), &mut |e| {
            if let darts::Event::Step(r) = e {
                losses.push(r.train_loss)
            }
        })
        .unwrap();
        let first: f32 = losses[..5].iter().sum::<f32>() / 5.0;
        let last: f32 = losses[losses.len() - 5..].iter().sum::<f32>() / 5.0;
        assert!(
            last < 0.8 * first,
            "{weighting:?}: loss went from {first} to {last}"
        );
        assert_eq!(s.history().len(), 3);
        let g = s.genotype();
        g.validate().unwrap();
        assert_eq!(g.normal.len(), 8);
        assert!(g
            .normal
            .iter()
            .chain(&g.reduce)
            .all(|(op, _)| *op != darts::primitives::Primitive::None));
    }
}

#[test]
fn same_seed_gives_identical_bits_with_one_and_two_threads() {
    let data = tiny_data(64, 1);
    let run_with = |threads: usize, order: Order| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                let mut s = Search::new(
                    SearchConfig {
                        order,
                        epochs: 1,
                        ..tiny_config()
                    },
                    3,
                    3,
                )
                .unwrap();
                run(&mut s, &data);
                (bits(&s), s.genotype())
            })
    };
    for order in [Order::First, Order::Second] {
        let (a, ga) = run_with(1, order);
        let (b, gb) = run_with(2, order);
        assert!(a == b, "{order:?}: 1 and 2 threads differ");
        assert_eq!(ga, gb);
    }
}

#[test]
fn stop_and_resume_equals_an_uninterrupted_run() {
    let data = tiny_data(64, 2);
    let mut straight = Search::new(tiny_config(), 3, 3).unwrap();
    run(&mut straight, &data);

    // Stop after 5 steps (mid-epoch: 4 steps per epoch), save, load, finish.
    let mut first = Search::new(tiny_config(), 3, 3).unwrap();
    for _ in 0..5 {
        first.step(&data).unwrap();
    }
    let dir = std::env::temp_dir().join(format!("darts-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("checkpoint.safetensors");
    first.save(&ckpt).unwrap();
    drop(first);
    let mut resumed = Search::load(&ckpt).unwrap();
    assert_eq!(resumed.position(), (1, 1));
    assert_eq!(run(&mut resumed, &data), Outcome::Finished);
    assert!(bits(&resumed) == bits(&straight), "resumed run diverged");
    let timeless = |h: &[EpochRecord]| {
        h.iter()
            .map(|r| EpochRecord {
                seconds: 0.0,
                ..r.clone()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        timeless(resumed.history()),
        timeless(straight.history()),
        "history (wall-clock times aside)"
    );

    // The same file loads as a plain supernet too (as `darts grad` reads it).
    let (_, params, _, alphas) = load_supernet(&ckpt).unwrap();
    assert_eq!(params.len(), straight.params().len());
    assert_eq!(alphas[0].dims(), &[14, 8]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cancellation_stops_between_steps() {
    let data = tiny_data(64, 3);
    let mut s = Search::new(tiny_config(), 3, 3).unwrap();
    let cancel = AtomicBool::new(false);
    let mut n = 0;
    let out = s
        .run(&data, &cancel, &mut |e| {
            if let darts::Event::Step(_) = e {
                n += 1;
                if n == 3 {
                    cancel.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        })
        .unwrap();
    assert_eq!((out, s.position()), (Outcome::Cancelled, (0, 3)));
}

/// A tiny smooth two-layer network whose layers are mixed ops over linear maps: h = sum_k
/// softmax(alphas_normal[0])_k x W_k^T, logits = sum_k softmax(alphas_reduce[3])_k h V_k^T, loss =
/// cross-entropy. It has no kinks, so finite differences of its unrolled loss are exact enough to
/// check the architect's formula tightly. Weights: W_0..W_7 [4, 5], then V_0..V_7 [3, 4].
fn smooth_eval(
    weights: &[Tensor],
    alphas: &[Tensor; 2],
    x: &Tensor,
    y: &[u32],
    want: Want,
) -> PassOut {
    let mut t = autograd::Tape::new();
    t.set_grad_enabled(want.weights || want.alphas);
    let w: Vec<_> = weights
        .iter()
        .map(|v| t.leaf(v.clone(), want.weights))
        .collect();
    let a = [
        t.leaf(alphas[0].clone(), want.alphas),
        t.leaf(alphas[1].clone(), want.alphas),
    ];
    let xv = t.leaf(x.clone(), false);
    let p0 = ops::softmax(&mut t, a[0]).unwrap();
    let p1 = ops::softmax(&mut t, a[1]).unwrap();
    let terms: Vec<_> = (0..8)
        .map(|k| (k, ops::linear(&mut t, xv, w[k], None).unwrap()))
        .collect();
    let h = ops::weighted_sum(&mut t, p0, 0, &terms).unwrap();
    let terms: Vec<_> = (0..8)
        .map(|k| (k, ops::linear(&mut t, h, w[8 + k], None).unwrap()))
        .collect();
    let logits = ops::weighted_sum(&mut t, p1, 3, &terms).unwrap();
    let loss = ops::cross_entropy(&mut t, logits, y).unwrap();
    let mut out = PassOut {
        loss: t.value(loss).item().unwrap(),
        correct: 0,
        weight_grads: vec![],
        alpha_grads: vec![],
    };
    if want.weights || want.alphas {
        t.backward(loss).unwrap();
        if want.weights {
            out.weight_grads = w.iter().map(|&v| t.grad(v).unwrap().clone()).collect();
        }
        if want.alphas {
            out.alpha_grads = a.iter().map(|&v| t.grad(v).unwrap().clone()).collect();
        }
    }
    out
}

/// The unrolled architecture gradient against central differences of
/// f(a) = L_val(w - eta * (momentum * v + grad_w L_train(w, a) + wd * w), a).
#[test]
fn second_order_gradient_matches_finite_differences_of_the_unrolled_loss() {
    let mut rng = Rng::new(9);
    let weights: Vec<Tensor> = (0..16)
        .map(|k| Tensor::randn(if k < 8 { [4, 5] } else { [3, 4] }, 0.7, &mut rng))
        .collect();
    let momentum: Vec<Tensor> = weights
        .iter()
        .map(|w| Tensor::randn(w.shape().clone(), 0.3, &mut rng))
        .collect();
    let alphas = [
        Tensor::randn([14, 8], 0.5, &mut rng),
        Tensor::randn([14, 8], 0.5, &mut rng),
    ];
    let (xt, xv) = (
        Tensor::randn([6, 5], 1.0, &mut rng),
        Tensor::randn([6, 5], 1.0, &mut rng),
    );
    let (yt, yv) = ([0u32, 1, 2, 0, 1, 2], [2u32, 2, 1, 0, 0, 1]);
    let step = VirtualStep {
        lr: 0.5,
        momentum: 0.9,
        // Larger than DARTS's 3e-4 so that the decay term visibly moves w' (a flipped sign in the
        // virtual step must fail this test).
        weight_decay: 0.05,
        momentum_buffers: &momentum,
    };

    let mut eval = |w: &[Tensor], batch: architect::Batch, want: Want, _: bool| {
        let (x, y) = if batch == architect::Batch::Train {
            (&xt, &yt[..])
        } else {
            (&xv, &yv[..])
        };
        Ok(smooth_eval(w, &alphas, x, y, want))
    };
    let analytic = architect::unrolled_alpha_grads(&mut eval, &weights, step)
        .unwrap()
        .alpha_grads;
    let first_order = smooth_eval(
        &weights,
        &alphas,
        &xv,
        &yv,
        Want {
            weights: false,
            alphas: true,
        },
    )
    .alpha_grads;

    let unrolled_loss = |a: &[Tensor; 2]| -> f64 {
        let g = smooth_eval(
            &weights,
            a,
            &xt,
            &yt,
            Want {
                weights: true,
                alphas: false,
            },
        );
        // The reference architect's virtual step, written out here (not the code under test):
        // w' = w - lr * (momentum * v + g + wd * w).
        let w2: Vec<Tensor> = weights
            .iter()
            .zip(&g.weight_grads)
            .zip(&momentum)
            .map(|((w, g), v)| {
                let d = w.data().iter().zip(g.data()).zip(v.data());
                let vals = d.map(|((&w, &g), &v)| {
                    w - step.lr * (step.momentum * v + g + step.weight_decay * w)
                });
                Tensor::from_vec(w.shape().clone(), vals.collect()).unwrap()
            })
            .collect();
        smooth_eval(
            &w2,
            a,
            &xv,
            &yv,
            Want {
                weights: false,
                alphas: false,
            },
        )
        .loss as f64
    };
    let eps = 1e-2f32;
    let mut correction_seen = 0.0f64;
    for (k, row) in [(0usize, 0usize), (1, 3)] {
        for col in 0..8 {
            let i = row * 8 + col;
            let mut a = alphas.clone();
            a[k].data_mut()[i] += eps;
            let plus = unrolled_loss(&a);
            a[k].data_mut()[i] -= 2.0 * eps;
            let minus = unrolled_loss(&a);
            let numeric = (plus - minus) / (2.0 * eps as f64);
            let an = analytic[k].data()[i] as f64;
            assert!(
                (an - numeric).abs() <= 1e-3 + 0.02 * numeric.abs(),
                "alpha {k}[{i}]: unrolled {an:.6e} vs finite difference {numeric:.6e}"
            );
            correction_seen = correction_seen.max((an - first_order[k].data()[i] as f64).abs());
        }
    }
    // The second-order term matters here: the check would fail for the first-order gradient.
    assert!(
        correction_seen > 1e-2,
        "second-order correction too small to be tested: {correction_seen}"
    );
}

#[test]
fn a_non_finite_loss_stops_the_search_with_a_clear_error() {
    let data = tiny_data(64, 5);
    let cfg = SearchConfig {
        lr: 1e30,
        grad_clip: 1e30,
        ..tiny_config()
    };
    let mut s = Search::new(cfg, 3, 3).unwrap();
    let err = s
        .run(&data, &AtomicBool::new(false), &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, darts::DartsError::NonFinite { .. }), "{err}");
    assert!(err.to_string().starts_with("non-finite"), "{err}");
}
