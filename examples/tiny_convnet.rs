//! Trains a tiny conv net on random data with the engine, then prints the last step's tape as
//! Graphviz DOT on stdout (progress goes to stderr):
//!
//!     cargo run --release --example tiny_convnet > tape.dot && dot -Tsvg tape.dot > tape.svg
//!
//! The task: 16x16 RGB noise images of three classes; class k has its k-th channel brightened by 0.3
//! (a faint signal under unit noise), learnable by conv -> BN -> ReLU -> global average pool -> linear.
use autograd::{Tape, Tensor};
use kernels::optim::{sgd_step, Sgd};
use ops::*;
use tensor::{kaiming_uniform, Rng};

fn main() -> Result<()> {
    let mut rng = Rng::new(0);
    let (n, steps) = (32, 60);
    let mut params = [
        ("conv.weight", kaiming_uniform([8, 3, 3, 3], &mut rng)?),
        ("bn.weight", Tensor::full([8], 1.0)),
        ("bn.bias", Tensor::zeros([8])),
        ("fc.weight", kaiming_uniform([3, 8], &mut rng)?),
        ("fc.bias", Tensor::zeros([3])),
    ];
    let mut momentum: Vec<Vec<f32>> = params.iter().map(|(_, p)| vec![0.0; p.numel()]).collect();
    let mut running = RunningStats::new(8);
    let sgd = Sgd {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    let mut tape = Tape::new();
    tape.set_record_grad_stats(true);
    for step in 0..steps {
        let mut x = Tensor::randn([n, 3, 16, 16], 1.0, &mut rng);
        let labels: Vec<u32> = (0..n).map(|_| rng.below(3) as u32).collect();
        for (img, &l) in x.data_mut().chunks_mut(3 * 256).zip(&labels) {
            img[l as usize * 256..][..256]
                .iter_mut()
                .for_each(|v| *v += 0.3);
        }

        tape.reset(); // reuse last step's buffers
        let vars: Vec<_> = params
            .iter()
            .map(|(name, p)| tape.param(*name, p))
            .collect();
        let xv = tape.leaf(x, false);
        let h = tape.scoped("features", |t| -> Result<_> {
            let h = conv2d(
                t,
                xv,
                vars[0],
                Conv2dOptions {
                    padding: 1,
                    ..Default::default()
                },
            )?;
            let h = batch_norm(
                t,
                h,
                Some((vars[1], vars[2])),
                Some(&mut running),
                BatchNormOptions::default(),
            )?;
            let h = relu(t, h)?;
            global_avg_pool(t, h)
        })?;
        let logits = tape.scoped("classifier", |t| linear(t, h, vars[3], Some(vars[4])))?;
        let loss = cross_entropy(&mut tape, logits, &labels)?;
        tape.backward(loss)?;

        for (((_, p), v), var) in params.iter_mut().zip(&mut momentum).zip(&vars) {
            let g = tape.grad(*var).expect("parameters get gradients");
            sgd_step(sgd, 1.0, 0.0, p.data_mut(), g.data(), v);
        }
        if step % 10 == 0 || step == steps - 1 {
            let acc = accuracy(tape.value(logits), &labels);
            eprintln!(
                "step {step:3}  loss {:.4}  batch accuracy {:.2}",
                tape.value(loss).item()?,
                acc
            );
        }
    }
    eprintln!("\nlast step's tape:\n{}", tape.summary());
    print!("{}", tape.to_dot());
    Ok(())
}

fn accuracy(logits: &Tensor, labels: &[u32]) -> f32 {
    let k = logits.dims()[1];
    let hits = logits
        .data()
        .chunks(k)
        .zip(labels)
        .filter(|(row, &l)| (0..k).max_by(|&a, &b| row[a].total_cmp(&row[b])) == Some(l as usize))
        .count();
    hits as f32 / labels.len() as f32
}
