//! This machine's own peaks, measured: the sgemm rate the convolutions live under and the memcpy
//! bandwidth the elementwise passes live under. `cargo bench --bench kernels` and
//! `darts bench --roofline` set their timings against these.
use crate::gemm::{sgemm, Trans};
use rayon::prelude::*;
use std::time::Instant;

/// Median seconds of `reps` runs of `f` after one warm-up run.
pub fn median_seconds<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Deterministic values in [-1, 1).
pub fn test_data(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

/// The peaks, each on one thread and on all of rayon's threads.
#[derive(Clone, Copy, Debug)]
pub struct Peaks {
    /// sgemm GFLOP/s on one thread.
    pub gflops_1: f64,
    /// sgemm GFLOP/s summed over one independent product per thread (as the convs run it).
    pub gflops_all: f64,
    /// memcpy GB/s (read + write) on one thread.
    pub gbs_1: f64,
    /// memcpy GB/s with all threads copying chunks.
    pub gbs_all: f64,
    /// Threads used for the `_all` figures.
    pub threads: usize,
}

impl Peaks {
    /// The compute peak: the better of the two sgemm rates.
    pub fn gflops(&self) -> f64 {
        self.gflops_1.max(self.gflops_all)
    }

    /// The bandwidth peak: the better of the two memcpy rates.
    pub fn gbs(&self) -> f64 {
        self.gbs_1.max(self.gbs_all)
    }

    /// Each rate the better of two measurements (of the same thread count).
    pub fn best(&self, other: &Peaks) -> Peaks {
        Peaks {
            gflops_1: self.gflops_1.max(other.gflops_1),
            gflops_all: self.gflops_all.max(other.gflops_all),
            gbs_1: self.gbs_1.max(other.gbs_1),
            gbs_all: self.gbs_all.max(other.gbs_all),
            threads: self.threads,
        }
    }
}

/// Measures sgemm on 512x512x512 products and memcpy on a 128 MiB buffer (median of `reps`).
pub fn measure(reps: usize) -> Peaks {
    let threads = rayon::current_num_threads();
    let n = 512;
    let (a, b) = (test_data(n * n), test_data(n * n));
    let flops = 2.0 * (n * n * n) as f64;
    let mut c = vec![0.0; n * n];
    let one = median_seconds(reps, || {
        sgemm(n, n, n, 1.0, &a, Trans::N, &b, Trans::N, 0.0, &mut c)
    });
    let mut cs = vec![vec![0.0f32; n * n]; threads];
    let all = median_seconds(reps, || {
        cs.par_iter_mut()
            .for_each(|c| sgemm(n, n, n, 1.0, &a, Trans::N, &b, Trans::N, 0.0, c));
    });
    let len = 1 << 25;
    let src = test_data(len);
    let mut dst = vec![0.0f32; len];
    let t1 = median_seconds(reps, || dst.copy_from_slice(&src));
    let tn = median_seconds(reps, || {
        dst.par_chunks_mut(1 << 16)
            .zip(src.par_chunks(1 << 16))
            .for_each(|(d, s)| d.copy_from_slice(s));
    });
    let bytes = 8.0 * len as f64; // read + write
    Peaks {
        gflops_1: flops / one / 1e9,
        gflops_all: flops * threads as f64 / all / 1e9,
        gbs_1: bytes / t1 / 1e9,
        gbs_all: bytes / tn / 1e9,
        threads,
    }
}
