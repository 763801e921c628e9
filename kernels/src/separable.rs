//! A depthwise conv then a pointwise (1x1) conv, sample by sample, the intermediate never stored:
//! z = depthwise(x, w_dw) (fused input ReLU, stride, padding, dilation as [`crate::depthwise`]),
//! y = w_pw z. The blocks of DARTS's sep and dil convs.
//!
//! Each sample's z ([C, Ho, Wo], 64 KiB for a 32x32 plane of 16 channels) is made in its thread's
//! scratch (`scratch.rs`) and read by the pointwise GEMM while it is still in cache; the backward
//! makes it again instead of keeping it from the forward: a third of the depthwise arithmetic spent to drop the largest
//! stored tensor of a search step. Per sample the backward then computes dz_n = W_pw^T dy_n;
//! z_n again and dW_dw_n = the depthwise weight gradient of (x_n, dz_n), from one padded copy of
//! each plane of x_n; dW_pw_n = dy_n z_n^T; and dx_n += the depthwise input gradient of dz_n.
//! dy_n may be made right there from a trailing batch norm's output and gradient
//! ([`Upstream::Bn`]). The per-sample weight gradients are
//! added in sample order, so results are bit-identical for any thread count (and to the two convs
//! run one after the other).
//!
//! Shapes: x [N, C, H, W], w_dw [C, 1, kh, kw], w_pw [Cout, C, 1, 1], y [N, Cout, Ho, Wo].
use crate::batchnorm::{self, OutputGrad};
use crate::conv::ConvGeom;
use crate::depthwise as dw;
use crate::gemm::{self, sgemm_ld, Ld, Trans};
use crate::mixed;
use crate::par;
use crate::scratch;
use std::cell::RefCell;

/// A separable block's shape: the depthwise conv's geometry (`c_in == c_out == groups`) and the
/// pointwise conv's output channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SepGeom {
    pub dw: ConvGeom,
    pub c_out: usize,
}

impl SepGeom {
    /// Output pixels per channel: Ho * Wo.
    fn hw(&self) -> usize {
        let (ho, wo) = self.dw.out_hw();
        ho * wo
    }

    /// Distance between the planes of a sample's z, dz and a batch norm's dy in scratch:
    /// [`gemm::row_stride`] of Ho * Wo (the 1x1 products read these planes as B's rows).
    fn plane_stride(&self) -> usize {
        gemm::row_stride(self.hw())
    }

    /// Values of one sample's intermediate z in scratch: C planes [`SepGeom::plane_stride`] apart.
    fn mid(&self) -> usize {
        self.dw.c_in * self.plane_stride()
    }

    /// N * Cout * Ho * Wo.
    pub fn y_len(&self) -> usize {
        self.dw.n * self.c_out * self.hw()
    }

    fn k2(&self) -> usize {
        self.dw.kh * self.dw.kw
    }

    /// The pointwise conv's geometry: a direct 1x1 conv on z.
    pub fn pointwise(&self) -> ConvGeom {
        let (ho, wo) = self.dw.out_hw();
        ConvGeom {
            n: self.dw.n,
            c_in: self.dw.c_in,
            h: ho,
            w: wo,
            c_out: self.c_out,
            kh: 1,
            kw: 1,
            stride: 1,
            pad: 0,
            dilation: 1,
            groups: 1,
            pre_relu: false,
        }
    }

    /// A sample's temporaries in the backward (this thread's `TEMPS`): z, dz and dy (made
    /// there when it comes through a batch norm).
    fn backward_temps(&self) -> usize {
        2 * self.mid() + self.c_out * self.plane_stride()
    }

    /// Per-sample scratch slot of [`backward`]: the two weight gradients' partials.
    fn backward_slot(&self) -> usize {
        self.c_out * self.dw.c_in + self.dw.c_in * self.k2()
    }

    /// Scratch [`backward`] needs: the per-sample weight gradients.
    pub fn backward_scratch_len(&self) -> usize {
        self.dw.n * self.backward_slot()
    }

    /// Multiply-adds of the forward, both convs (a parallel-or-serial decision's work).
    fn work(&self) -> usize {
        self.dw.n * self.dw.c_in * self.hw() * (self.k2() + self.c_out)
    }
}

/// y = w_pw depthwise(x, w_dw), each sample's z in this thread's `TEMPS`. With
/// `stats` ([N, Cout, 2]), each output plane's [`batchnorm::plane_stats`] too, taken while the
/// sample's output is in cache (a trailing training-mode BN's statistics without reading y again).
pub fn forward(
    g: &SepGeom,
    x: &[f32],
    w_dw: &[f32],
    w_pw: &[f32],
    y: &mut [f32],
    stats: Option<&mut [f32]>,
) {
    let (mid, hw, x_len, zs) = (
        g.mid(),
        g.hw(),
        g.dw.c_in * g.dw.h * g.dw.w,
        g.plane_stride(),
    );
    let c = g.dw.c_in;
    let planes = dw::Planes::new(&g.dw).out_planes_apart(zs);
    let ld = Ld { a: c, b: zs, c: hw };
    let (stats, slot) = match stats {
        Some(stats) => (stats, 2 * g.c_out),
        None => (&mut [][..], 0),
    };
    par::chunks_with_scratch(y, g.c_out * hw, stats, slot, 2 * g.work(), |n, y, stats| {
        scratch::with(&TEMPS, mid, |z| {
            planes.forward_sample(&x[n * x_len..][..x_len], w_dw, z);
            sgemm_ld(g.c_out, c, hw, 1.0, w_pw, Trans::N, z, Trans::N, 0.0, y, ld);
        });
        for (st, plane) in stats.chunks_exact_mut(2).zip(y.chunks_exact(hw)) {
            st.copy_from_slice(&batchnorm::plane_stats(plane));
        }
    });
}

thread_local! {
    /// Each thread's z (and in the backward dz and dy) of the sample it works on
    /// (`scratch.rs`): the same cache lines sample after sample.
    static TEMPS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The gradients wanted of y = w_pw depthwise(x, w_dw): each `Some` is added into (`+=`), except
/// dx when `dx_add` is false: then dx = 0.0 + its gradient (the bits of adding into zeros; its
/// old values unread).
pub struct SepGrads<'a> {
    pub dx: Option<&'a mut [f32]>,
    pub dx_add: bool,
    pub dw_dw: Option<&'a mut [f32]>,
    pub dw_pw: Option<&'a mut [f32]>,
}

/// Where the block's dL/dy comes from.
pub enum Upstream<'a> {
    /// dL/dy itself, [N, Cout, Ho, Wo].
    Grad(&'a [f32]),
    /// A trailing training-mode batch norm without affine parameters, from its output `y` and
    /// its gradient `g`: each sample's dL/dy is made in its thread's scratch, where the
    /// backward reads it in cache, instead of in a batch-sized buffer written and read back.
    Bn {
        y: &'a [f32],
        g: &'a [f32],
        coef: &'a OutputGrad<'a>,
    },
    /// The block's output as a term of a mixed op (the term's `x` is the block's y): each
    /// sample's dL/dy is the term's input gradient, made in scratch as for `Bn`.
    Term(mixed::TermPlanes<'a>),
}

/// Adds the gradients of y = w_pw depthwise(x, w_dw) for dL/dy from `up` into `grads`. `scratch`
/// holds [`SepGeom::backward_scratch_len`] values.
pub fn backward(
    g: &SepGeom,
    x: &[f32],
    w_dw: &[f32],
    w_pw: &[f32],
    up: Upstream,
    grads: SepGrads,
    scratch: &mut [f32],
) {
    let (c, mid, hw, zs) = (g.dw.c_in, g.mid(), g.hw(), g.plane_stride());
    let (x_len, y_len, slot) = (c * g.dw.h * g.dw.w, g.c_out * hw, g.backward_slot());
    let SepGrads {
        dx,
        dx_add,
        dw_dw,
        dw_pw,
    } = grads;
    let (want_dx, want_dw, want_pw) = (dx.is_some(), dw_dw.is_some(), dw_pw.is_some());
    let planes = dw::Planes::new(&g.dw).out_planes_apart(zs);
    let sample = |n: usize, s: &mut [f32], dx: Option<&mut [f32]>, temps: &mut [f32]| {
        let x = &x[n * x_len..][..x_len];
        let (z, rest) = temps.split_at_mut(mid);
        let (dz, dy_bn) = rest.split_at_mut(mid);
        let (part_pw, part_dw) = s.split_at_mut(g.c_out * c);
        // The sample's dy and the distance between its planes: the caller's, or made here from
        // the batch norm with planes zs apart like z's. (Copying the caller's into that layout
        // costs what the products gain: dy comes from memory either way.)
        let (dy, ldy) = match &up {
            Upstream::Grad(dy) => (&dy[n * y_len..][..y_len], hw),
            Upstream::Bn { y, g: gy, coef } => {
                for (co, dy) in dy_bn.chunks_mut(zs).enumerate() {
                    let at = n * y_len + co * hw;
                    coef.write_plane(co, &y[at..][..hw], &gy[at..][..hw], &mut dy[..hw]);
                }
                (&*dy_bn, zs)
            }
            Upstream::Term(term) => {
                for (co, dy) in dy_bn.chunks_mut(zs).enumerate() {
                    term.plane(n * g.c_out + co, &mut dy[..hw]);
                }
                (&*dy_bn, zs)
            }
        };
        if want_dx || want_dw {
            let ld = Ld {
                a: c,
                b: ldy,
                c: zs,
            };
            sgemm_ld(
                c,
                g.c_out,
                hw,
                1.0,
                w_pw,
                Trans::T,
                dy,
                Trans::N,
                0.0,
                dz,
                ld,
            );
        }
        // z made again and the depthwise weight gradient, each input plane padded once for both.
        if want_dw {
            part_dw.fill(0.0);
        }
        let (mut z, dz) = (want_pw.then_some(z), &*dz);
        planes.forward_weight_grad_sample(
            x,
            w_dw,
            z.as_deref_mut(),
            want_dw.then_some((dz, part_dw)),
        );
        if let Some(z) = z {
            let ld = Ld { a: ldy, b: zs, c };
            sgemm_ld(
                g.c_out,
                hw,
                c,
                1.0,
                dy,
                Trans::N,
                z,
                Trans::T,
                0.0,
                part_pw,
                ld,
            );
        }
        if let Some(dx) = dx {
            planes.backward_data_sample(x, w_dw, dz, dx, dx_add);
        }
    };
    // Forward recompute, two GEMMs and the depthwise backward: about 3x the forward's work.
    let work = 6 * g.work();
    let scratch = &mut scratch[..g.dw.n * slot];
    let temps = g.backward_temps();
    match dx {
        Some(dx) => par::chunks2(scratch, slot, dx, x_len, work, |n, s, dx| {
            scratch::with(&TEMPS, temps, |t| sample(n, s, Some(dx), t))
        }),
        None => par::chunks(scratch, slot, work, |n, s| {
            scratch::with(&TEMPS, temps, |t| sample(n, s, None, t))
        }),
    }
    if let Some(d) = dw_pw {
        crate::elementwise::add_parts(d, scratch, slot, 0);
    }
    if let Some(d) = dw_dw {
        crate::elementwise::add_parts(d, scratch, slot, g.c_out * c);
    }
}

/// The definition: the two convs' references one after the other (z stored).
pub mod reference {
    use super::{SepGeom, SepGrads};
    use crate::conv::reference as conv;

    pub fn forward(g: &SepGeom, x: &[f32], w_dw: &[f32], w_pw: &[f32], y: &mut [f32]) {
        let mut z = vec![0.0; g.dw.y_len()];
        conv::forward(&g.dw, x, w_dw, &mut z);
        conv::forward(&g.pointwise(), &z, w_pw, y);
    }

    pub fn backward(
        g: &SepGeom,
        x: &[f32],
        w_dw: &[f32],
        w_pw: &[f32],
        dy: &[f32],
        grads: SepGrads,
    ) {
        let mut z = vec![0.0; g.dw.y_len()];
        conv::forward(&g.dw, x, w_dw, &mut z);
        let pw = g.pointwise();
        if let Some(d) = grads.dw_pw {
            conv::backward_weight(&pw, &z, dy, d);
        }
        let mut dz = vec![0.0; g.dw.y_len()];
        conv::backward_data(&pw, &z, w_pw, dy, &mut dz);
        if let Some(d) = grads.dx {
            if !grads.dx_add {
                d.fill(0.0);
            }
            conv::backward_data(&g.dw, x, w_dw, &dz, d);
        }
        if let Some(d) = grads.dw_dw {
            conv::backward_weight(&g.dw, x, &dz, d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, assert_close_to_magnitude, bits, vec_f32};
    use proptest::prelude::*;

    /// DARTS's blocks and their neighbours: k 3 or 5, stride 1 or 2, dilation 1 or 2, "same"
    /// padding or less, widths that exercise the 8-lane tails; planes up to 20x20 (tiled) and a
    /// few wider than the tiled path takes.
    fn geom() -> impl Strategy<Value = SepGeom> {
        (
            (1usize..4, prop_oneof![1usize..5, 8usize..11], 1usize..6),
            prop_oneof![3usize..21, Just(48usize)],
            prop_oneof![Just(3usize), Just(5)],
            (1usize..3, 1usize..3, 0usize..5, any::<bool>()),
        )
            .prop_map(|((n, c, c_out), hw, k, (s, d, p, relu))| SepGeom {
                dw: ConvGeom {
                    n,
                    c_in: c,
                    h: hw,
                    w: hw.saturating_sub(1).max(3),
                    c_out: c,
                    kh: k,
                    kw: k,
                    stride: s,
                    pad: p.min(d * (k - 1) / 2),
                    dilation: d,
                    groups: c,
                    pre_relu: relu,
                },
                c_out,
            })
            .prop_filter("window fits", |g| {
                let (a, b) = g.dw.out_hw();
                a > 0 && b > 0
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn fused_matches_reference(
            (g, x, w_dw, w_pw, dy, dx0, d_dw0, d_pw0) in geom().prop_flat_map(|g| (
                Just(g),
                vec_f32(g.dw.x_len()),
                vec_f32(g.dw.w_len()),
                vec_f32(g.c_out * g.dw.c_in),
                vec_f32(g.y_len()),
                vec_f32(g.dw.x_len()),
                vec_f32(g.dw.w_len()),
                vec_f32(g.c_out * g.dw.c_in),
            ))
        ) {
            let (mut y, mut y_ref) = (vec![f32::NAN; g.y_len()], vec![0.0; g.y_len()]);
            let mut scratch = vec![f32::NAN; g.backward_scratch_len()];
            forward(&g, &x, &w_dw, &w_pw, &mut y, None);
            reference::forward(&g, &x, &w_dw, &w_pw, &mut y_ref);
            assert_close(&y, &y_ref, 1e-4);

            // With the planes' statistics: the same y, and the statistics batch_stats takes of it.
            let (mut y2, mut stats) = (vec![f32::NAN; y.len()], vec![f32::NAN; 2 * g.dw.n * g.c_out]);
            forward(&g, &x, &w_dw, &w_pw, &mut y2, Some(&mut stats));
            prop_assert_eq!(&y2, &y);
            let bn = crate::batchnorm::BnShape { n: g.dw.n, c: g.c_out, hw: g.hw() };
            let (mut want, mut m, mut v) = (vec![0.0; stats.len()], vec![0.0; bn.c], vec![0.0; bn.c]);
            crate::batchnorm::batch_stats(bn, &y, &mut want, &mut m, &mut v);
            prop_assert_eq!(bits(&stats), bits(&want));

            let (mut dx, mut d_dw, mut d_pw) = (dx0.clone(), d_dw0.clone(), d_pw0.clone());
            let (mut dx_r, mut d_dw_r, mut d_pw_r) = (dx0.clone(), d_dw0.clone(), d_pw0.clone());
            scratch.fill(f32::NAN);
            backward(&g, &x, &w_dw, &w_pw, Upstream::Grad(&dy), SepGrads { dx: Some(&mut dx), dx_add: true, dw_dw: Some(&mut d_dw), dw_pw: Some(&mut d_pw) }, &mut scratch);
            reference::backward(&g, &x, &w_dw, &w_pw, &dy, SepGrads { dx: Some(&mut dx_r), dx_add: true, dw_dw: Some(&mut d_dw_r), dw_pw: Some(&mut d_pw_r) });
            assert_close(&dx, &dx_r, 1e-4);
            // The weight gradients sum n * ho * wo products of random signs (up to 4512 here):
            // both sides' rounding grows with the products' magnitudes, which the reference on
            // absolute values adds up (1e-3 of the result failed once in 4800 cases on that).
            let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
            let (mut m_dw, mut m_pw) = (abs(&d_dw0), abs(&d_pw0));
            let mags = SepGrads { dx: None, dx_add: true, dw_dw: Some(&mut m_dw), dw_pw: Some(&mut m_pw) };
            reference::backward(&g, &abs(&x), &abs(&w_dw), &abs(&w_pw), &abs(&dy), mags);
            assert_close_to_magnitude(&d_dw, &d_dw_r, &m_dw, 2e-5);
            assert_close_to_magnitude(&d_pw, &d_pw_r, &m_pw, 2e-5);

            // Each gradient alone is the same as with the others.
            scratch.fill(f32::NAN); // nothing left over from the call above
            let mut only = dx0.clone();
            backward(&g, &x, &w_dw, &w_pw, Upstream::Grad(&dy), SepGrads { dx: Some(&mut only), dx_add: true, dw_dw: None, dw_pw: None }, &mut scratch);
            prop_assert_eq!(&only, &dx);
            scratch.fill(f32::NAN); // nothing left over from the call above
            let mut only = d_dw0.clone();
            backward(&g, &x, &w_dw, &w_pw, Upstream::Grad(&dy), SepGrads { dx: None, dx_add: true, dw_dw: Some(&mut only), dw_pw: None }, &mut scratch);
            prop_assert_eq!(&only, &d_dw);
            scratch.fill(f32::NAN); // nothing left over from the call above
            let mut only = d_pw0.clone();
            backward(&g, &x, &w_dw, &w_pw, Upstream::Grad(&dy), SepGrads { dx: None, dx_add: true, dw_dw: None, dw_pw: Some(&mut only) }, &mut scratch);
            prop_assert_eq!(&only, &d_pw);

            // dx written whole (over NaN) has the bits of dx added into zeros.
            let (mut fresh, mut zeros) = (vec![f32::NAN; dx.len()], vec![0.0; dx.len()]);
            backward(&g, &x, &w_dw, &w_pw, Upstream::Grad(&dy), SepGrads { dx: Some(&mut fresh), dx_add: false, dw_dw: None, dw_pw: None }, &mut scratch);
            backward(&g, &x, &w_dw, &w_pw, Upstream::Grad(&dy), SepGrads { dx: Some(&mut zeros), dx_add: true, dw_dw: None, dw_pw: None }, &mut scratch);
            prop_assert_eq!(bits(&fresh), bits(&zeros));
        }
    }

    /// A block's geometry: n 3, 4 channels in, `c_out` out, a k x k window at "same" padding.
    fn block(hw: usize, k: usize, stride: usize, c_out: usize) -> SepGeom {
        SepGeom {
            dw: ConvGeom {
                n: 3,
                c_in: 4,
                h: hw,
                w: hw,
                c_out: 4,
                kh: k,
                kw: k,
                stride,
                pad: k / 2,
                dilation: 1,
                groups: 4,
                pre_relu: true,
            },
            c_out,
        }
    }

    /// The fused block gives the same bits as the depthwise and pointwise kernels run one after
    /// the other with z stored (what the engine did before the fusion): at stride 2, on
    /// 32 x 32 planes, whose z and dz lie in scratch with planes further apart than their size,
    /// and on 8 x 8 planes of 9 channels (the channels-last weight gradient, one block and one
    /// channel of the next).
    #[test]
    fn fused_is_bit_identical_to_the_two_kernels() {
        let b = block(8, 5, 1, 6);
        let nine = SepGeom {
            dw: ConvGeom {
                c_in: 9,
                c_out: 9,
                groups: 9,
                ..b.dw
            },
            ..b
        };
        assert!(crate::channels_last::Hwc::new(&nine.dw).is_some());
        for g in [block(16, 5, 2, 6), block(32, 3, 1, 5), nine] {
            assert_eq!(g.plane_stride() > g.hw(), g.hw() == 1024);
            fused_and_two_kernels_agree(&g);
        }
    }

    fn fused_and_two_kernels_agree(g: &SepGeom) {
        let pw = g.pointwise();
        let f = |i: usize, m: usize| ((i * 37 + m) % 23) as f32 / 11.0 - 1.0;
        let x: Vec<f32> = (0..g.dw.x_len()).map(|i| f(i, 1)).collect();
        let w_dw: Vec<f32> = (0..g.dw.w_len()).map(|i| f(i, 2)).collect();
        let w_pw: Vec<f32> = (0..pw.w_len()).map(|i| f(i, 3)).collect();
        let dy: Vec<f32> = (0..g.y_len()).map(|i| f(i, 4)).collect();

        let mut z = vec![0.0; g.dw.y_len()];
        dw::forward(&g.dw, &x, &w_dw, &mut z);
        let mut y_two = vec![0.0; g.y_len()];
        crate::conv::forward(&pw, &z, &w_pw, &mut y_two);
        let (mut dz, mut d_pw_two) = (vec![0.0; z.len()], vec![0.0; w_pw.len()]);
        crate::conv::backward_data(&pw, &z, &w_pw, &dy, &mut dz);
        let mut partial = vec![0.0; crate::conv::weight_partial_len(&pw)];
        crate::conv::backward_weight(&pw, &z, &dy, &mut d_pw_two, &mut partial);
        let (mut dx_two, mut d_dw_two) = (vec![0.0; x.len()], vec![0.0; w_dw.len()]);
        dw::backward_data(&g.dw, &x, &w_dw, &dz, &mut dx_two);
        dw::backward_weight(&g.dw, &x, &dz, &mut d_dw_two);

        let mut y = vec![0.0; g.y_len()];
        forward(g, &x, &w_dw, &w_pw, &mut y, None);
        assert_eq!(bits(&y), bits(&y_two));
        let two = [dx_two, d_dw_two, d_pw_two].map(|v| bits(&v));
        assert_eq!(grad_bits(g, &x, &w_dw, &w_pw, Upstream::Grad(&dy)), two);
    }

    /// dx, dW_dw and dW_pw added into zeros (from a NaN-filled scratch), as bits.
    fn grad_bits(
        g: &SepGeom,
        x: &[f32],
        w_dw: &[f32],
        w_pw: &[f32],
        up: Upstream,
    ) -> [Vec<u32>; 3] {
        let mut scratch = vec![f32::NAN; g.backward_scratch_len()];
        let (mut dx, mut d_dw, mut d_pw) = (
            vec![0.0; x.len()],
            vec![0.0; w_dw.len()],
            vec![0.0; w_pw.len()],
        );
        let grads = SepGrads {
            dx: Some(&mut dx),
            dx_add: true,
            dw_dw: Some(&mut d_dw),
            dw_pw: Some(&mut d_pw),
        };
        backward(g, x, w_dw, w_pw, up, grads, &mut scratch);
        [dx, d_dw, d_pw].map(|v| bits(&v))
    }

    /// dL/dy made per sample from a trailing BN's output and gradient gives the same bits as
    /// the BN's batch kernel writing it to a buffer first (what the op did before), also where
    /// it is made with planes further apart than their size (32 x 32).
    #[test]
    fn bn_upstream_is_bit_identical_to_the_bn_kernel_first() {
        for hw in [13, 32] {
            bn_upstream_agrees(&block(hw, 3, 1, 5));
        }
    }

    fn bn_upstream_agrees(g: &SepGeom) {
        use crate::batchnorm::{backward_scratch_len, backward_train_from_output, BnShape};
        let f = |i: usize, m: usize| ((i * 37 + m) % 23) as f32 / 11.0 - 1.0;
        let x: Vec<f32> = (0..g.dw.x_len()).map(|i| f(i, 1)).collect();
        let w_dw: Vec<f32> = (0..g.dw.w_len()).map(|i| f(i, 2)).collect();
        let w_pw: Vec<f32> = (0..g.c_out * g.dw.c_in).map(|i| f(i, 3)).collect();
        let y: Vec<f32> = (0..g.y_len()).map(|i| f(i, 4)).collect();
        let gy: Vec<f32> = (0..g.y_len()).map(|i| f(i, 5)).collect();
        let bn = BnShape {
            n: 3,
            c: 5,
            hw: g.hw(),
        };
        let var: Vec<f32> = (0..5).map(|c| 0.5 + c as f32).collect();
        let mut bn_scratch = vec![f32::NAN; backward_scratch_len(bn)];
        let mut dy = vec![0.0; g.y_len()];
        backward_train_from_output(bn, &y, &var, 1e-5, &gy, &mut dy, true, &mut bn_scratch);
        let coef = OutputGrad::train(bn, &y, &var, 1e-5, &gy, &mut bn_scratch);
        let up = Upstream::Bn {
            y: &y,
            g: &gy,
            coef: &coef,
        };
        let fused = grad_bits(g, &x, &w_dw, &w_pw, up);
        assert_eq!(fused, grad_bits(g, &x, &w_dw, &w_pw, Upstream::Grad(&dy)));
    }
}
