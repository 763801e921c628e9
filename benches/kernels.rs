//! Kernel throughput against this machine's own peaks: sgemm GFLOP/s (the compute peak the convs
//! live under) and memcpy GB/s (the bandwidth peak the elementwise passes live under).
//! `cargo bench --bench kernels` (single thread, then all threads where the kernel is parallel).
use kernels::conv::ConvGeom;
use kernels::gemm::{sgemm, Trans};
use kernels::{depthwise, maxw, optim};
use std::time::Instant;

/// Median seconds of `reps` runs of `f` after one warm-up run.
fn time<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

fn data(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

fn main() {
    let threads = rayon::current_num_threads();
    println!("machine: {} threads available\n", threads);

    // sgemm peak: square products, one thread, and one per thread in parallel (as the convs use it).
    let n = 512;
    let (a, b) = (data(n * n), data(n * n));
    let flops = 2.0 * (n * n * n) as f64;
    let mut c = vec![0.0; n * n];
    let one = time(5, || {
        sgemm(n, n, n, 1.0, &a, Trans::N, &b, Trans::N, 0.0, &mut c)
    });
    let mut cs = vec![vec![0.0f32; n * n]; threads];
    let all = time(5, || {
        use rayon::prelude::*;
        cs.par_iter_mut()
            .for_each(|c| sgemm(n, n, n, 1.0, &a, Trans::N, &b, Trans::N, 0.0, c));
    });
    let peak1 = flops / one / 1e9;
    let peak = flops * threads as f64 / all / 1e9;
    println!("sgemm {n}x{n}x{n}: {peak1:.1} GFLOP/s on 1 thread, {peak:.1} GFLOP/s on {threads} (the compute peak)");

    // memcpy bandwidth on a buffer well beyond the caches.
    let len = 1 << 25; // 128 MiB
    let src = data(len);
    let mut dst = vec![0.0f32; len];
    let t1 = time(5, || dst.copy_from_slice(&src));
    let tn = time(5, || {
        use rayon::prelude::*;
        dst.par_chunks_mut(1 << 16)
            .zip(src.par_chunks(1 << 16))
            .for_each(|(d, s)| d.copy_from_slice(s));
    });
    let (m1, mn) = (8.0 * len as f64 / t1 / 1e9, 8.0 * len as f64 / tn / 1e9); // read + write
    let memcpy = m1.max(mn);
    println!("memcpy {} MiB: {m1:.1} GB/s on 1 thread, {mn:.1} GB/s on {threads} (read + write); peak {memcpy:.1} GB/s\n", len * 4 >> 20);

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

    // The max-gradient transform fused into SGD: max pass (read g) + update pass (read w, g, v; write w, v).
    let mut wt = data(len);
    let mut v = vec![0.0f32; len];
    let h = optim::Sgd {
        lr: 0.01,
        momentum: 0.9,
        weight_decay: 3e-4,
    };
    let t = time(5, || {
        let m = optim::max_value(&src);
        optim::sgd_step(h, 1.0, m, &mut wt, &src, &mut v);
    });
    let bw = 4.0 * 6.0 * len as f64 / t / 1e9;
    println!(
        "max-gradient transform + SGD step: {bw:.1} GB/s = {:.0}% of memcpy",
        100.0 * bw / memcpy
    );
    let mut buf = data(len);
    let t = time(5, || optim::subtract_max(&mut buf));
    let bw = 4.0 * 3.0 * len as f64 / t / 1e9; // max: read; subtract: read + write
    println!(
        "subtract_max alone: {bw:.1} GB/s = {:.0}% of memcpy\n",
        100.0 * bw / memcpy
    );

    // Depthwise 3x3 and 5x5 at the tiny preset's first-cell size (batch 16, C 8, 32x32).
    for (k, pad, dil) in [(3, 1, 1), (5, 2, 1), (3, 2, 2)] {
        let geom = ConvGeom {
            n: 16,
            c_in: 8,
            h: 32,
            w: 32,
            c_out: 8,
            kh: k,
            kw: k,
            stride: 1,
            pad,
            dilation: dil,
            groups: 8,
            pre_relu: true,
        };
        let (x, wk) = (data(geom.x_len()), data(geom.w_len()));
        let mut y = vec![0.0f32; geom.y_len()];
        let t = time(21, || depthwise::forward(&geom, &x, &wk, &mut y));
        let gf = 2.0 * (geom.y_len() * k * k) as f64 / t / 1e9;
        println!("depthwise {k}x{k} dilation {dil} forward [16, 8, 32, 32]: {gf:.1} GFLOP/s = {:.0}% of the sgemm peak", 100.0 * gf / peak);
    }
}
