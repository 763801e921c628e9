//! Data movement: channel concat/split, strided spatial slices (the crop x[:, :, 1:, 1:] and the
//! stride-2 subsample x[:, :, ::2, ::2] of the `none` op and FactorizedReduce), global average pool.
use crate::par;
use crate::simd::{self, load_strided, store, LANES};

/// out [N, sum(C_i), HW] = the parts [N, C_i, HW] side by side on the channel axis.
pub fn concat_channels(parts: &[&[f32]], channels: &[usize], n: usize, hw: usize, out: &mut [f32]) {
    let total: usize = channels.iter().sum();
    par::chunks(out, total * hw, out.len(), |s, out| {
        let mut off = 0;
        for (p, &c) in parts.iter().zip(channels) {
            out[off..off + c * hw].copy_from_slice(&p[s * c * hw..][..c * hw]);
            off += c * hw;
        }
    });
    debug_assert_eq!(out.len(), n * total * hw);
}

/// Backward of [`concat_channels`] for part `k`: dpart += the matching channel block of dout.
pub fn split_channels_add(
    dout: &[f32],
    channels: &[usize],
    k: usize,
    n: usize,
    hw: usize,
    dpart: &mut [f32],
) {
    let total: usize = channels.iter().sum();
    let (off, c) = (channels[..k].iter().sum::<usize>() * hw, channels[k] * hw);
    par::chunks(dpart, c, n * c, |s, dp| {
        crate::elementwise::axpy(1.0, &dout[s * total * hw + off..][..c], dp)
    });
}

/// Backward of a channel split for part `k`: the channel block of dwhole += dpart.
pub fn merge_channels_add(
    dpart: &[f32],
    channels: &[usize],
    k: usize,
    n: usize,
    hw: usize,
    dwhole: &mut [f32],
) {
    let total: usize = channels.iter().sum();
    let (off, c) = (channels[..k].iter().sum::<usize>() * hw, channels[k] * hw);
    par::chunks(dwhole, total * hw, n * c, |s, dw| {
        crate::elementwise::axpy(1.0, &dpart[s * c..][..c], &mut dw[off..off + c])
    });
}

/// A strided window of each plane: out[p, i, j] = x[p, top + i * stride, left + j * stride] for
/// i < out_h, j < out_w. Planes are H x W.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice2d {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub top: usize,
    pub left: usize,
    pub stride: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl Slice2d {
    /// True when every read lies inside the plane.
    pub fn fits(&self) -> bool {
        self.stride > 0
            && (self.out_h == 0 || self.top + (self.out_h - 1) * self.stride < self.h)
            && (self.out_w == 0 || self.left + (self.out_w - 1) * self.stride < self.w)
    }
}

/// out = the strided window of x (gathers 8 columns at a time).
pub fn slice2d(s: &Slice2d, x: &[f32], out: &mut [f32]) {
    par::chunks(out, s.out_h * s.out_w, out.len(), |p, out| {
        let x = &x[p * s.h * s.w..][..s.h * s.w];
        for i in 0..s.out_h {
            let src = &x[(s.top + i * s.stride) * s.w + s.left..];
            let dst = &mut out[i * s.out_w..][..s.out_w];
            let n8 = s.out_w / LANES * LANES;
            for j in (0..n8).step_by(LANES) {
                store(load_strided(&src[j * s.stride..], s.stride), &mut dst[j..]);
            }
            for j in n8..s.out_w {
                dst[j] = src[j * s.stride];
            }
        }
    });
}

/// dx += the window's gradient scattered back to where [`slice2d`] read it.
pub fn slice2d_backward(s: &Slice2d, dout: &[f32], dx: &mut [f32]) {
    par::chunks(dx, s.h * s.w, dout.len(), |p, dx| {
        reference::slice2d_backward_plane(
            s,
            &dout[p * s.out_h * s.out_w..][..s.out_h * s.out_w],
            dx,
        )
    });
}

/// `y[p]` = mean of plane p of x (planes of `hw` values).
pub fn global_avg_pool(x: &[f32], hw: usize, y: &mut [f32]) {
    par::chunks(y, 1, x.len(), |p, y| {
        y[0] = simd::sum(&x[p * hw..][..hw]) / hw as f32
    });
}

/// `dx[p, :] += dy[p] / hw`.
pub fn global_avg_pool_backward(dy: &[f32], hw: usize, dx: &mut [f32]) {
    par::chunks(dx, hw, dx.len(), |p, dx| {
        let share = dy[p] / hw as f32;
        let n8 = hw / LANES * LANES;
        for i in (0..n8).step_by(LANES) {
            store(
                simd::load(&dx[i..]) + simd::f32x8::splat(share),
                &mut dx[i..],
            );
        }
        for v in &mut dx[n8..] {
            *v += share;
        }
    });
}

pub mod reference {
    use super::Slice2d;

    pub fn concat_channels(
        parts: &[&[f32]],
        channels: &[usize],
        n: usize,
        hw: usize,
        out: &mut [f32],
    ) {
        let total: usize = channels.iter().sum();
        for s in 0..n {
            let mut c0 = 0;
            for (p, &c) in parts.iter().zip(channels) {
                for ci in 0..c {
                    for i in 0..hw {
                        out[(s * total + c0 + ci) * hw + i] = p[(s * c + ci) * hw + i];
                    }
                }
                c0 += c;
            }
        }
    }

    pub fn split_channels_add(
        dout: &[f32],
        channels: &[usize],
        k: usize,
        n: usize,
        hw: usize,
        dpart: &mut [f32],
    ) {
        let total: usize = channels.iter().sum();
        let (c0, c) = (channels[..k].iter().sum::<usize>(), channels[k]);
        for s in 0..n {
            for ci in 0..c {
                for i in 0..hw {
                    dpart[(s * c + ci) * hw + i] += dout[(s * total + c0 + ci) * hw + i];
                }
            }
        }
    }

    pub fn merge_channels_add(
        dpart: &[f32],
        channels: &[usize],
        k: usize,
        n: usize,
        hw: usize,
        dwhole: &mut [f32],
    ) {
        let total: usize = channels.iter().sum();
        let (c0, c) = (channels[..k].iter().sum::<usize>(), channels[k]);
        for s in 0..n {
            for ci in 0..c {
                for i in 0..hw {
                    dwhole[(s * total + c0 + ci) * hw + i] += dpart[(s * c + ci) * hw + i];
                }
            }
        }
    }

    pub fn slice2d(s: &Slice2d, x: &[f32], out: &mut [f32]) {
        for p in 0..s.planes {
            for i in 0..s.out_h {
                for j in 0..s.out_w {
                    out[(p * s.out_h + i) * s.out_w + j] =
                        x[(p * s.h + s.top + i * s.stride) * s.w + s.left + j * s.stride];
                }
            }
        }
    }

    pub(crate) fn slice2d_backward_plane(s: &Slice2d, dout: &[f32], dx: &mut [f32]) {
        for i in 0..s.out_h {
            for j in 0..s.out_w {
                dx[(s.top + i * s.stride) * s.w + s.left + j * s.stride] += dout[i * s.out_w + j];
            }
        }
    }

    pub fn slice2d_backward(s: &Slice2d, dout: &[f32], dx: &mut [f32]) {
        let (plane, oplane) = (s.h * s.w, s.out_h * s.out_w);
        for p in 0..s.planes {
            slice2d_backward_plane(
                s,
                &dout[p * oplane..][..oplane],
                &mut dx[p * plane..][..plane],
            );
        }
    }

    pub fn global_avg_pool(x: &[f32], hw: usize, y: &mut [f32]) {
        for (p, y) in y.iter_mut().enumerate() {
            *y = x[p * hw..][..hw].iter().sum::<f32>() / hw as f32;
        }
    }

    pub fn global_avg_pool_backward(dy: &[f32], hw: usize, dx: &mut [f32]) {
        for (i, d) in dx.iter_mut().enumerate() {
            *d += dy[i / hw] / hw as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, vec_f32};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn concat_split_match_reference(
            (n, hw, ch, data) in (1usize..4, 1usize..20, proptest::collection::vec(1usize..4, 1..4))
                .prop_flat_map(|(n, hw, ch)| { let t: usize = ch.iter().sum(); (Just(n), Just(hw), Just(ch), vec_f32(n * t * hw)) })
        ) {
            let mut offs = vec![0];
            for c in &ch { offs.push(offs.last().unwrap() + n * c * hw); }
            let parts: Vec<&[f32]> = (0..ch.len()).map(|k| &data[offs[k]..offs[k + 1]]).collect();
            let (mut out, mut want) = (vec![0.0; data.len()], vec![0.0; data.len()]);
            concat_channels(&parts, &ch, n, hw, &mut out);
            reference::concat_channels(&parts, &ch, n, hw, &mut want);
            prop_assert_eq!(&out, &want);
            for (k, part) in parts.iter().enumerate() {
                let (mut a, mut b) = (part.to_vec(), part.to_vec());
                split_channels_add(&out, &ch, k, n, hw, &mut a);
                reference::split_channels_add(&out, &ch, k, n, hw, &mut b);
                prop_assert_eq!(&a, &b);
                prop_assert_eq!(a, part.iter().map(|v| 2.0 * v).collect::<Vec<_>>());
                let (mut m, mut mr) = (out.clone(), out.clone());
                merge_channels_add(part, &ch, k, n, hw, &mut m);
                reference::merge_channels_add(part, &ch, k, n, hw, &mut mr);
                prop_assert_eq!(m, mr);
            }
        }

        #[test]
        fn slice_and_gap_match_reference(
            (s, x, dout) in (1usize..4, 1usize..20, 1usize..40, 0usize..2, 0usize..2, 1usize..3).prop_flat_map(|(planes, h, w, top, left, stride)| {
                let out_h = (h.saturating_sub(top)).div_ceil(stride);
                let out_w = (w.saturating_sub(left)).div_ceil(stride);
                let s = Slice2d { planes, h, w, top, left, stride, out_h, out_w };
                (Just(s), vec_f32(planes * h * w), vec_f32(planes * out_h * out_w))
            })
        ) {
            prop_assert!(s.fits());
            let (mut out, mut want) = (vec![0.0; dout.len()], vec![0.0; dout.len()]);
            slice2d(&s, &x, &mut out);
            reference::slice2d(&s, &x, &mut want);
            prop_assert_eq!(&out, &want);
            let (mut dx, mut dxr) = (x.clone(), x.clone());
            slice2d_backward(&s, &dout, &mut dx);
            reference::slice2d_backward(&s, &dout, &mut dxr);
            prop_assert_eq!(&dx, &dxr);

            let hw = s.h * s.w;
            let (mut g, mut gr) = (vec![0.0; s.planes], vec![0.0; s.planes]);
            global_avg_pool(&x, hw, &mut g);
            reference::global_avg_pool(&x, hw, &mut gr);
            assert_close(&g, &gr, 1e-5);
            let (mut dx, mut dxr) = (x.clone(), x.clone());
            global_avg_pool_backward(&g, hw, &mut dx);
            reference::global_avg_pool_backward(&g, hw, &mut dxr);
            assert_close(&dx, &dxr, 1e-6);
        }
    }
}
