//! Learning-rate schedules over epochs: cosine annealing (DARTS) and cosine power annealing
//! (sharpDARTS, SPEC section 3), with optional linear warm-up.

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
/// The shape of the learning-rate schedule.
pub enum Schedule {
    /// lr(e) = min + (max - min) (1 + cos(pi e / E)) / 2 for epochs e = 0..E (PyTorch's
    /// CosineAnnealingLR with T_max = E, stepped once per epoch).
    Cosine,
    /// SPEC section 3 with exponent base `order`.
    CosinePower {
        /// The exponent base (sharpDARTS uses 2).
        order: f64,
    },
}

/// A schedule with its bounds and warm-up.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LrSchedule {
    /// The shape.
    pub schedule: Schedule,
    /// Rate at the start (after warm-up).
    pub max_lr: f32,
    /// Rate at the end.
    pub min_lr: f32,
    /// Length of the schedule in epochs.
    pub epochs: usize,
    /// Epochs of linear warm-up from min_lr towards the schedule's value at the end of warm-up.
    pub warmup_epochs: usize,
}

impl LrSchedule {
    /// The learning rate of epoch `epoch` (0-based).
    pub fn lr(&self, epoch: usize) -> f32 {
        if epoch < self.warmup_epochs {
            let target = self.unwarmed(self.warmup_epochs) as f64;
            let frac = (epoch + 1) as f64 / (self.warmup_epochs + 1) as f64;
            return (self.min_lr as f64 + frac * (target - self.min_lr as f64)) as f32;
        }
        self.unwarmed(epoch)
    }

    fn unwarmed(&self, epoch: usize) -> f32 {
        let (lo, hi, e_total) = (
            self.min_lr as f64,
            self.max_lr as f64,
            self.epochs.max(1) as f64,
        );
        let p = match self.schedule {
            Schedule::Cosine => (1.0 + (std::f64::consts::PI * epoch as f64 / e_total).cos()) / 2.0,
            Schedule::CosinePower { order } => {
                // e in 1..=E; p = order^(c + 1) (or c for order 1); rescaled to [0, 1] over all epochs.
                let raw = |e: f64| {
                    let c = (1.0 + (std::f64::consts::PI * e / e_total).cos()) / 2.0;
                    if order == 1.0 {
                        c
                    } else {
                        order.powf(c + 1.0)
                    }
                };
                let (first, last) = (raw(1.0), raw(e_total));
                if (first - last).abs() < f64::EPSILON {
                    1.0
                } else {
                    (raw(epoch as f64 + 1.0) - last) / (first - last)
                }
            }
        };
        (lo + p * (hi - lo)) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_matches_pytorch_values() {
        let s = LrSchedule {
            schedule: Schedule::Cosine,
            max_lr: 0.025,
            min_lr: 0.001,
            epochs: 50,
            warmup_epochs: 0,
        };
        assert_eq!(s.lr(0), 0.025);
        // PyTorch CosineAnnealingLR(T_max=50, eta_min=0.001) after 25 steps: 0.013
        assert!((s.lr(25) - 0.013).abs() < 1e-6);
        assert!(s.lr(49) > 0.001 && s.lr(49) < 0.0011);
    }

    #[test]
    fn cosine_power_spans_max_to_min_and_decreases() {
        let s = LrSchedule {
            schedule: Schedule::CosinePower { order: 2.0 },
            max_lr: 0.025,
            min_lr: 0.001,
            epochs: 10,
            warmup_epochs: 0,
        };
        assert!((s.lr(0) - 0.025).abs() < 1e-7 && (s.lr(9) - 0.001).abs() < 1e-7);
        assert!((1..10).all(|e| s.lr(e) < s.lr(e - 1)));
        // Power annealing front-loads the decay compared with plain cosine at the midpoint.
        let c = LrSchedule {
            schedule: Schedule::Cosine,
            ..s
        };
        assert!(s.lr(4) < c.lr(4));
    }

    /// SPEC section 3 evaluated independently (Python, float64) for E = 4, lr 0.025 -> 0.001:
    /// c = (1 + cos(pi e / 4)) / 2, p = order^(c + 1), rescaled to [0, 1] over e = 1..4.
    #[test]
    fn cosine_power_matches_hand_computed_values_for_two_orders() {
        for (order, want) in [
            (
                2.0,
                [
                    0.025,
                    0.013_319_443_338_663_185,
                    0.004_177_608_625_911_7,
                    0.001,
                ],
            ),
            (
                10.0,
                [
                    0.025,
                    0.009_455_177_792_326_27,
                    0.002_568_141_546_931_394,
                    0.001,
                ],
            ),
        ] {
            let s = LrSchedule {
                schedule: Schedule::CosinePower { order },
                max_lr: 0.025,
                min_lr: 0.001,
                epochs: 4,
                warmup_epochs: 0,
            };
            for (e, w) in want.iter().enumerate() {
                assert!(
                    (s.lr(e) as f64 - w).abs() < 1e-8,
                    "order {order} epoch {e}: {} vs {w}",
                    s.lr(e)
                );
            }
        }
    }

    /// One epoch: the rescaling over epochs is 0 / 0; the one epoch runs at the maximum rate.
    #[test]
    fn cosine_power_of_one_epoch_runs_at_the_maximum() {
        for order in [1.0, 2.0] {
            let s = LrSchedule {
                schedule: Schedule::CosinePower { order },
                max_lr: 0.025,
                min_lr: 0.001,
                epochs: 1,
                warmup_epochs: 0,
            };
            assert_eq!(s.lr(0), 0.025, "order {order}");
        }
    }

    #[test]
    fn warmup_rises_linearly_into_the_schedule() {
        let s = LrSchedule {
            schedule: Schedule::Cosine,
            max_lr: 0.1,
            min_lr: 0.0,
            epochs: 10,
            warmup_epochs: 3,
        };
        assert!(s.lr(0) < s.lr(1) && s.lr(1) < s.lr(2) && s.lr(2) < s.lr(3));
        assert!((s.lr(2) - 0.75 * s.lr(3)).abs() < 1e-6);
        // From min_lr, not from 0: lr(e) = min + (e + 1) / (w + 1) * (lr(w) - min).
        let s = LrSchedule { min_lr: 0.01, ..s };
        let target = 0.01 + 0.09 * (1.0 + (std::f64::consts::PI * 0.3).cos()) / 2.0;
        assert!((s.lr(3) as f64 - target).abs() < 1e-7);
        assert!((s.lr(0) as f64 - (0.01 + 0.25 * (target - 0.01))).abs() < 1e-7);
    }
}
