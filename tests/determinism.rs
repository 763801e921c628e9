//! Same inputs, 1 thread vs 2 threads: the loss and every gradient must be bit-identical. The
//! network is a small DARTS-like block (stem, a Max-W mixed edge of sep-conv / pools / skip,
//! a FactorizedReduce, classifier) with tensors large enough that every kernel takes its parallel path.
use autograd::{Tape, Tensor, Var};
use ops::*;
use tensor::{kaiming_uniform, Rng};

struct Params {
    stem: Tensor,
    dw: Tensor,
    pw: Tensor,
    alpha: Tensor,
    fr1: Tensor,
    fr2: Tensor,
    fc_w: Tensor,
    fc_b: Tensor,
}

fn params(rng: &mut Rng) -> Params {
    Params {
        stem: kaiming_uniform([16, 3, 3, 3], rng).unwrap(),
        dw: kaiming_uniform([16, 1, 3, 3], rng).unwrap(),
        pw: kaiming_uniform([16, 16, 1, 1], rng).unwrap(),
        alpha: Tensor::randn([1, 8], 1e-3, rng),
        fr1: kaiming_uniform([8, 16, 1, 1], rng).unwrap(),
        fr2: kaiming_uniform([8, 16, 1, 1], rng).unwrap(),
        fc_w: kaiming_uniform([10, 16], rng).unwrap(),
        fc_b: Tensor::zeros([10]),
    }
}

/// Loss and all gradients (in parameter order), as raw bits.
fn loss_and_grads(p: &Params, x: &Tensor, labels: &[u32]) -> Vec<u32> {
    let mut t = Tape::new();
    let names = ["stem", "dw", "pw", "alpha", "fr1", "fr2", "fc_w", "fc_b"];
    let vals = [
        &p.stem, &p.dw, &p.pw, &p.alpha, &p.fr1, &p.fr2, &p.fc_w, &p.fc_b,
    ];
    let v: Vec<Var> = names
        .iter()
        .zip(vals)
        .map(|(n, val)| t.param(*n, val))
        .collect();
    let xv = t.leaf(x.clone(), false);
    let bn = BatchNormOptions::default();
    let s = conv2d(
        &mut t,
        xv,
        v[0],
        Conv2dOptions {
            padding: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let s = batch_norm(&mut t, s, None, None, bn).unwrap();
    // Mixed edge: sep-conv-ish, max pool + BN, avg pool + BN, skip; weights from Max-W.
    let w = maxw(&mut t, v[3]).unwrap();
    let d = depthwise_conv2d(
        &mut t,
        s,
        v[1],
        Conv2dOptions {
            padding: 1,
            pre_relu: true,
            ..Default::default()
        },
    )
    .unwrap();
    let d = conv2d(&mut t, d, v[2], Conv2dOptions::default()).unwrap();
    let d = batch_norm(&mut t, d, None, None, bn).unwrap();
    let pool = PoolOptions {
        kernel: 3,
        stride: 1,
        padding: 1,
    };
    let mp = max_pool2d(&mut t, s, pool).unwrap();
    let mp = batch_norm(&mut t, mp, None, None, bn).unwrap();
    let ap = avg_pool2d(&mut t, s, pool).unwrap();
    let ap = batch_norm(&mut t, ap, None, None, bn).unwrap();
    let m = weighted_sum(&mut t, w, 0, &[(1, mp), (2, ap), (3, s), (4, d)]).unwrap();
    // FactorizedReduce: relu, two 1x1 stride-2 convs (the second on x[:, :, 1:, 1:]), concat, BN.
    let [_, _, h, wd] = t.value(m).shape().nchw("test").unwrap();
    let c1 = conv2d(
        &mut t,
        m,
        v[4],
        Conv2dOptions {
            stride: 2,
            pre_relu: true,
            ..Default::default()
        },
    )
    .unwrap();
    let shifted = slice2d(&mut t, m, Slice::crop(1, 1, h, wd)).unwrap();
    let c2 = conv2d(
        &mut t,
        shifted,
        v[5],
        Conv2dOptions {
            stride: 2,
            pre_relu: true,
            ..Default::default()
        },
    )
    .unwrap();
    let fr = concat_channels(&mut t, &[c1, c2]).unwrap();
    let fr = batch_norm(&mut t, fr, None, None, bn).unwrap();
    let g = global_avg_pool(&mut t, fr).unwrap();
    let logits = linear(&mut t, g, v[6], Some(v[7])).unwrap();
    let loss = cross_entropy(&mut t, logits, labels).unwrap();
    t.backward(loss).unwrap();
    let mut bits = vec![t.value(loss).item().unwrap().to_bits()];
    for var in &v {
        bits.extend(t.grad(*var).unwrap().data().iter().map(|f| f.to_bits()));
    }
    bits
}

#[test]
fn one_and_two_threads_give_identical_bits() {
    let mut rng = Rng::new(42);
    let p = params(&mut rng);
    let x = Tensor::randn([8, 3, 32, 32], 1.0, &mut rng);
    let labels: Vec<u32> = (0..8).map(|_| rng.below(10) as u32).collect();
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| loss_and_grads(&p, &x, &labels))
    };
    let one = run(1);
    let two = run(2);
    assert_eq!(one.len(), two.len());
    let first_diff = one.iter().zip(&two).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "results differ between 1 and 2 threads");
    assert_eq!(run(2), two, "and between two runs with 2 threads");
}
