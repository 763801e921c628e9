//! gradcheck must reject a backward that is slightly wrong: here the real depthwise-conv kernels,
//! recorded as an op whose weight gradient is scaled by 1.01 (or not, as the control).
use autograd::{gradcheck, Backward, GradSlots, GradcheckOptions, Tape, Tensor, Var};
use kernels::conv::ConvGeom;
use kernels::depthwise;
use tensor::Rng;

const GEOM: ConvGeom = ConvGeom {
    n: 2,
    c_in: 3,
    h: 6,
    w: 6,
    c_out: 3,
    kh: 3,
    kw: 3,
    stride: 1,
    pad: 1,
    dilation: 1,
    groups: 3,
    pre_relu: false,
};

struct DepthwiseBack {
    weight_grad_scale: f32,
}

impl Backward for DepthwiseBack {
    fn backward(&self, inputs: &[&Tensor], _: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        if let Some(dx) = grads[0].as_mut() {
            depthwise::backward_data(
                &GEOM,
                inputs[0].data(),
                inputs[1].data(),
                g.data(),
                dx.data_mut(),
            );
        }
        if let Some(dw) = grads[1].as_mut() {
            let mut fresh = vec![0.0; dw.numel()];
            depthwise::backward_weight(&GEOM, inputs[0].data(), g.data(), &mut fresh);
            for (d, f) in dw.data_mut().iter_mut().zip(fresh) {
                *d += self.weight_grad_scale * f;
            }
        }
    }
}

fn check(weight_grad_scale: f32) -> autograd::GradcheckReport {
    let mut rng = Rng::new(3);
    let x = Tensor::randn([2, 3, 6, 6], 1.0, &mut rng);
    let w = Tensor::randn([3, 1, 3, 3], 1.0, &mut rng);
    let r = Tensor::randn([2, 3, 6, 6], 1.0, &mut rng);
    let f = |t: &mut Tape, v: &[Var]| {
        let mut y = Tensor::zeros([2, 3, 6, 6]);
        depthwise::forward(
            &GEOM,
            t.value(v[0]).data(),
            t.value(v[1]).data(),
            y.data_mut(),
        );
        let y = t.push("depthwise", y, v, DepthwiseBack { weight_grad_scale });
        ops::dot_const(t, y, &r)
    };
    gradcheck(f, &[x, w], GradcheckOptions::default()).unwrap()
}

#[test]
fn correct_backward_passes() {
    let report = check(1.0);
    assert!(report.passed, "{report}");
}

#[test]
fn backward_off_by_one_percent_is_rejected() {
    let report = check(1.01);
    assert!(
        !report.passed,
        "a 1% wrong weight gradient slipped through: {report}"
    );
    assert_eq!(
        report.worst.unwrap().input,
        1,
        "the worst element is in the weight gradient"
    );
}
