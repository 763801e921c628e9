//! Kernel throughput against this machine's own peaks: sgemm GFLOP/s (the compute peak the convs
//! live under) and memcpy GB/s (the bandwidth peak the elementwise passes live under).
//! `cargo bench --bench kernels` (single thread, then all threads where the kernel is parallel).
//! Last: the fused separable block (depthwise then 1x1, as `ops::separable_conv`), per pass.
use kernels::conv::ConvGeom;
use kernels::gemm::{self, Trans};
use kernels::separable::{self, SepGeom, SepGrads, Upstream};
use kernels::{depthwise, maxw, optim};

use kernels::peak::{median_seconds as time, test_data as data};

fn main() {
    let threads = rayon::current_num_threads();
    println!("machine: {} threads available\n", threads);

    // sgemm peak (square products, one thread, and one per thread in parallel as the convs use
    // it) and memcpy bandwidth on a buffer well beyond the caches.
    let p = kernels::peak::measure(5);
    let (peak1, peak) = (p.gflops_1, p.gflops_all);
    println!("sgemm 512x512x512: {peak1:.1} GFLOP/s on 1 thread, {peak:.1} GFLOP/s on {threads} (the compute peak)");
    let memcpy = p.gbs();
    println!(
        "memcpy 128 MiB: {:.1} GB/s on 1 thread, {:.1} GB/s on {threads} (read + write); peak {memcpy:.1} GB/s\n",
        p.gbs_1, p.gbs_all
    );

    let len = 1 << 25; // 128 MiB buffers for the memory-bound kernels below
    let src = data(len);

    // Max-W rows: reads alpha, writes p and w (12 bytes per element).
    let rows = len / 8;
    let alpha = data(rows * 8);
    let (mut p, mut w) = (vec![0.0f32; rows * 8], vec![0.0f32; rows * 8]);
    let t = time(5, || maxw::forward(&alpha, 8, &mut p, &mut w));
    let bw = 12.0 * (rows * 8) as f64 / t / 1e9;
    println!(
        "maxw forward, {rows} rows of 8: {bw:.1} GB/s = {:.0}% of memcpy",
        100.0 * bw / memcpy
    );
    let g = data(rows * 8);
    let mut da = vec![0.0f32; rows * 8];
    let t = time(5, || maxw::backward(&p, &g, 8, &mut da));
    let bw = 16.0 * (rows * 8) as f64 / t / 1e9; // reads p, g, da; writes da
    println!(
        "maxw backward: {bw:.1} GB/s = {:.0}% of memcpy",
        100.0 * bw / memcpy
    );

    // The clip norm's read pass also yields the max (one read of g instead of two).
    let fused = time(5, || {
        std::hint::black_box(optim::sum_squares_and_max(&src));
    });
    let apart = time(5, || {
        std::hint::black_box(kernels::simd::dot(&src, &src));
        std::hint::black_box(optim::max_value(&src));
    });
    println!(
        "clip norm + max: one pass {:.2} ms vs norm pass then max pass {:.2} ms ({:.2}x)",
        fused * 1e3,
        apart * 1e3,
        apart / fused
    );

    // The max-gradient transform fused into SGD: the norm + max read pass (read g) + the update pass
    // (read w, g, v; write w, v).
    let mut wt = data(len);
    let mut v = vec![0.0f32; len];
    let h = optim::Sgd {
        lr: 0.01,
        momentum: 0.9,
        weight_decay: 3e-4,
    };
    let t = time(5, || {
        let (_, m) = optim::sum_squares_and_max(&src);
        optim::sgd_step(h, 1.0, m, &mut wt, &src, &mut v);
    });
    let bw = 4.0 * 6.0 * len as f64 / t / 1e9;
    println!(
        "clip norm + max-gradient transform + SGD step: {bw:.1} GB/s = {:.0}% of memcpy",
        100.0 * bw / memcpy
    );
    let mut buf = data(len);
    let t = time(5, || optim::subtract_max(&mut buf));
    let bw = 4.0 * 3.0 * len as f64 / t / 1e9; // max: read; subtract: read + write
    println!(
        "subtract_max alone: {bw:.1} GB/s = {:.0}% of memcpy\n",
        100.0 * bw / memcpy
    );

    // The 1x1 convs' products at the standard preset's sizes (C x C by C x HW per sample: the
    // forward, the input gradient with A transposed, the weight gradient as A B^T), in cache, on
    // one thread: register tiles that spill or run out of registers show here first.
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    println!("1x1 conv products, one thread, GFLOP/s (% of the 1-thread sgemm peak)");
    for (c, hw) in [(16, 1024), (32, 256), (64, 64)] {
        let cases = [
            ("A B", (c, c, hw), Trans::N, Trans::N),
            ("A^T B", (c, c, hw), Trans::T, Trans::N),
            ("A B^T", (c, hw, c), Trans::N, Trans::T),
        ];
        let line: Vec<String> = cases
            .iter()
            .map(|&(name, (m, k, n), ta, tb)| {
                let (a, b, mut out) = (data(m * k), data(k * n), vec![0.0f32; m * n]);
                let reps = 50;
                let t = one_thread.install(|| {
                    time(9, || {
                        for _ in 0..reps {
                            gemm::sgemm(m, k, n, 1.0, &a, ta, &b, tb, 0.0, &mut out);
                        }
                    })
                });
                let gf = 2.0 * (m * k * n * reps) as f64 / t / 1e9;
                format!("{name} {gf:.1} ({:.0}%)", 100.0 * gf / peak1)
            })
            .collect();
        println!("  C {c}, HW {hw}: {}", line.join(" / "));
    }
    println!();

    // Depthwise convs at the standard preset's sizes (batch 64; C 16 at 32x32, 32 at 16x16, 64 at
    // 8x8; the reduction cells' stride 2), all three passes, on one thread (per-core efficiency).
    println!("depthwise, one thread, GFLOP/s (% of the 1-thread sgemm peak): forward / backward data / backward weight");
    let mut separable_lines = Vec::new();
    for (c, hw, stride) in [(16, 32, 1), (32, 16, 1), (64, 8, 1), (32, 32, 2)] {
        for (k, pad, dil) in [(3, 1, 1), (5, 2, 1), (3, 2, 2), (5, 4, 2)] {
            let geom = ConvGeom {
                n: 64,
                c_in: c,
                h: hw,
                w: hw,
                c_out: c,
                kh: k,
                kw: k,
                stride,
                pad,
                dilation: dil,
                groups: c,
                pre_relu: true,
            };
            let (x, wk, dy) = (data(geom.x_len()), data(geom.w_len()), data(geom.y_len()));
            let (mut y, mut dx, mut dw) = (
                vec![0.0f32; geom.y_len()],
                vec![0.0f32; geom.x_len()],
                vec![0.0f32; geom.w_len()],
            );
            let gf = |t: f64| 2.0 * (geom.y_len() * k * k) as f64 / t / 1e9;
            let [f, bd, bw] = one_thread.install(|| {
                [
                    time(9, || depthwise::forward(&geom, &x, &wk, &mut y)),
                    time(9, || depthwise::backward_data(&geom, &x, &wk, &dy, &mut dx)),
                    time(9, || depthwise::backward_weight(&geom, &x, &dy, &mut dw)),
                ]
                .map(gf)
            });
            println!(
                "  [64, {c}, {hw}, {hw}] {k}x{k} dil {dil} stride {stride}: {f:.1} ({:.0}%) / {bd:.1} ({:.0}%) / {bw:.1} ({:.0}%)",
                100.0 * f / peak1,
                100.0 * bd / peak1,
                100.0 * bw / peak1
            );
            // The fused separable block at this shape (Cout = C): forward, the whole backward
            // (z made again, both weight gradients, dx), and dx alone (the alpha-only passes).
            let g = SepGeom { dw: geom, c_out: c };
            let (w_pw, mut d_pw) = (data(c * c), vec![0.0f32; c * c]);
            let mut scratch = vec![0.0f32; g.backward_scratch_len()];
            let [sf, sb, sbx] = one_thread.install(|| {
                let sf = time(9, || separable::forward(&g, &x, &wk, &w_pw, &mut y, None));
                let mut backward = |weights: bool| {
                    let grads = SepGrads {
                        dx: Some(&mut dx),
                        dx_add: false,
                        dw_dw: weights.then_some(&mut dw[..]),
                        dw_pw: weights.then_some(&mut d_pw[..]),
                    };
                    let up = Upstream::Grad(&dy);
                    separable::backward(&g, &x, &wk, &w_pw, up, grads, &mut scratch)
                };
                [sf, time(9, || backward(true)), time(9, || backward(false))].map(|t| t * 1e3)
            });
            separable_lines.push(format!(
                "  [64, {c}, {hw}, {hw}] {k}x{k} dil {dil} stride {stride}: {sf:.2} / {sb:.2} / {sbx:.2}"
            ));
        }
    }
    println!("\nseparable block (depthwise + 1x1), one thread, ms: forward / backward / backward dx only");
    for line in separable_lines {
        println!("{line}");
    }
}
