//! The Universal Scalability Law, fitted to measured throughput.
//!
//! X(N) = λN / (1 + σ(N−1) + κN(N−1)): λ is the throughput of one worker, σ the share of work
//! that does not run in parallel (contention), κ the cost of workers keeping each other in step
//! (coherence). With κ > 0 throughput peaks at N* = √((1−σ)/κ) and falls after it.
//!
//! [`fit`] finds λ, σ, κ ≥ 0 by least squares on the throughput itself: for given σ and κ the
//! best λ has a closed form, so only σ and κ are searched — on a coarse grid, then by a pattern
//! search around the best grid point. Deterministic, no iteration limit a user can reach.
//!
//! ```
//! use pardo::tune::usl::{fit, Usl};
//!
//! let truth = Usl { lambda: 100.0, sigma: 0.05, kappa: 0.002 };
//! let points: Vec<(f64, f64)> = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
//!     .iter()
//!     .map(|&n| (n, truth.throughput(n)))
//!     .collect();
//! let got = fit(&points)?;
//! assert!((got.usl.sigma - 0.05).abs() < 1e-3);
//! assert!((got.usl.kappa - 0.002).abs() < 1e-4);
//! assert_eq!(got.best_workers(1000), 22); // √(0.95 / 0.002) ≈ 21.8
//! # Ok::<(), pardo::tune::usl::UslError>(())
//! ```

use serde::{Deserialize, Serialize};

/// The law's three parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Usl {
    /// Throughput of one worker, in completions per second.
    pub lambda: f64,
    /// Contention: the share of the work that is serialised, 0 to 1.
    pub sigma: f64,
    /// Coherence: the cost of every pair of workers agreeing, ≥ 0.
    pub kappa: f64,
}

impl Usl {
    /// Predicted throughput at `n` workers.
    pub fn throughput(&self, n: f64) -> f64 {
        self.lambda * shape(self.sigma, self.kappa, n)
    }

    /// Where throughput peaks, when it does; `None` when it keeps rising (κ = 0, σ < 1).
    /// Fully serialised work (σ ≥ 1) peaks at one worker.
    pub fn peak_n(&self) -> Option<f64> {
        if self.sigma >= 1.0 {
            Some(1.0)
        } else if self.kappa > 0.0 {
            Some(((1.0 - self.sigma) / self.kappa).sqrt().max(1.0))
        } else {
            None
        }
    }
}

fn shape(sigma: f64, kappa: f64, n: f64) -> f64 {
    n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0))
}

/// A fit and how well it holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UslFit {
    /// The fitted parameters.
    pub usl: Usl,
    /// Share of the throughput's variance the law explains (1 is a perfect fit).
    pub r_squared: f64,
    /// Root mean square of the residuals, in completions per second.
    pub rms_residual: f64,
    /// The largest worker count measured; the fit says little beyond it.
    pub max_measured_n: f64,
}

impl UslFit {
    /// The best whole worker count, at most `max`: the peak when there is one, else `max`
    /// (throughput keeps rising, so the largest allowed count is best).
    pub fn best_workers(&self, max: usize) -> usize {
        let max = max.max(1);
        let Some(peak) = self.usl.peak_n() else {
            return max;
        };
        let lo = (peak.floor().max(1.0) as usize).min(max);
        let hi = (peak.ceil().max(1.0) as usize).min(max);
        if self.usl.throughput(hi as f64) > self.usl.throughput(lo as f64) {
            hi
        } else {
            lo
        }
    }

    /// Predicted throughput at [`UslFit::best_workers`].
    pub fn predicted_peak(&self, max: usize) -> f64 {
        self.usl.throughput(self.best_workers(max) as f64)
    }
}

/// Why no fit came out.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum UslError {
    /// A point had a worker count below 1 or a throughput that is negative or not a number.
    #[error("point {index} (workers {n}, throughput {throughput}) is not a measurement: workers must be at least 1 and throughput a finite number ≥ 0")]
    InvalidPoint {
        /// Index of the point.
        index: usize,
        /// Its worker count.
        n: f64,
        /// Its throughput.
        throughput: f64,
    },
    /// Three parameters need at least three different worker counts.
    #[error("only {distinct} different worker counts measured; the fit needs at least 3")]
    TooFewLevels {
        /// Different worker counts given.
        distinct: usize,
    },
    /// Every throughput was zero.
    #[error("every measured throughput is zero; nothing to fit")]
    NoThroughput,
    /// The best fit explains too little of the data: the work does not scale the way the law
    /// describes (or the measurements are too noisy).
    #[error("the data do not fit the scalability law (R² {:.2} < {:.2}); measure longer or look at the points themselves", fit.r_squared, MIN_R_SQUARED)]
    DoesNotFit {
        /// The best fit found, for display.
        fit: Box<UslFit>,
    },
}

/// R² under which a fit is reported as not fitting.
pub const MIN_R_SQUARED: f64 = 0.9;

/// Fits the law to `(workers, throughput)` points by least squares. Points may repeat a worker
/// count (several measurements at one level).
///
/// ```
/// use pardo::tune::usl::{fit, UslError};
/// // Throughput that jumps around with no relation to the worker count.
/// let points = [(1.0, 10.0), (2.0, 80.0), (3.0, 5.0), (4.0, 90.0), (5.0, 2.0), (6.0, 70.0)];
/// assert!(matches!(fit(&points), Err(UslError::DoesNotFit { .. })));
/// assert!(matches!(fit(&[(1.0, 1.0), (2.0, 2.0)]), Err(UslError::TooFewLevels { distinct: 2 })));
/// ```
pub fn fit(points: &[(f64, f64)]) -> Result<UslFit, UslError> {
    for (index, &(n, x)) in points.iter().enumerate() {
        if !(n.is_finite() && n >= 1.0 && x.is_finite() && x >= 0.0) {
            return Err(UslError::InvalidPoint {
                index,
                n,
                throughput: x,
            });
        }
    }
    let mut levels: Vec<f64> = points.iter().map(|p| p.0).collect();
    levels.sort_by(f64::total_cmp);
    levels.dedup();
    if levels.len() < 3 {
        return Err(UslError::TooFewLevels {
            distinct: levels.len(),
        });
    }
    if points.iter().all(|p| p.1 == 0.0) {
        return Err(UslError::NoThroughput);
    }

    let (sigma, kappa) = search(points);
    let (lambda, sse) = best_lambda(points, sigma, kappa);
    let count = points.len() as f64;
    let mean = points.iter().map(|p| p.1).sum::<f64>() / count;
    let sst: f64 = points.iter().map(|p| (p.1 - mean).powi(2)).sum();
    let r_squared = if sst > 0.0 {
        1.0 - sse / sst
    } else if sse <= f64::EPSILON * mean * mean * count {
        1.0
    } else {
        0.0
    };
    let fit = UslFit {
        usl: Usl {
            lambda,
            sigma,
            kappa,
        },
        r_squared,
        rms_residual: (sse / count).sqrt(),
        max_measured_n: levels.last().copied().unwrap_or(1.0),
    };
    if r_squared < MIN_R_SQUARED {
        return Err(UslError::DoesNotFit { fit: Box::new(fit) });
    }
    Ok(fit)
}

/// For fixed σ and κ, throughput is λ times a known shape: λ is a one-variable least squares.
fn best_lambda(points: &[(f64, f64)], sigma: f64, kappa: f64) -> (f64, f64) {
    let (mut xf, mut ff) = (0.0, 0.0);
    for &(n, x) in points {
        let f = shape(sigma, kappa, n);
        xf += x * f;
        ff += f * f;
    }
    let lambda = if ff > 0.0 { (xf / ff).max(0.0) } else { 0.0 };
    let sse = points
        .iter()
        .map(|&(n, x)| (x - lambda * shape(sigma, kappa, n)).powi(2))
        .sum();
    (lambda, sse)
}

/// σ and κ with the least squared error: a grid, then a pattern search from its best point.
fn search(points: &[(f64, f64)]) -> (f64, f64) {
    let sse = |s: f64, k: f64| best_lambda(points, s, k).1;
    // κ spans orders of magnitude, so its grid is logarithmic, with zero beside it.
    let kappas: Vec<f64> = std::iter::once(0.0)
        .chain((0..=56).map(|i| 10f64.powf(-8.0 + i as f64 / 8.0)))
        .collect();
    let mut best = (0.0, 0.0, f64::INFINITY);
    for i in 0..=40 {
        let s = i as f64 / 40.0;
        for &k in &kappas {
            let e = sse(s, k);
            if e < best.2 {
                best = (s, k, e);
            }
        }
    }
    let (mut s, mut k, mut e) = best;
    // A pattern search that lengthens a step that paid and shortens one that did not: σ and κ
    // trade off along a narrow valley, which fixed steps would crawl along.
    let mut ds = 1.0 / 80.0;
    let mut dk = (k * 0.5).max(1e-6);
    for _ in 0..4000 {
        let mut moved = false;
        for (cs, ck) in [(s + ds, k), (s - ds, k), (s, k + dk), (s, k - dk)] {
            let (cs, ck) = (cs.clamp(0.0, 1.0), ck.max(0.0));
            let ce = sse(cs, ck);
            if ce < e {
                (s, k, e) = (cs, ck, ce);
                moved = true;
            }
        }
        if moved {
            ds = (ds * 2.0).min(0.25);
            dk = (dk * 2.0).min(k.max(1e-6));
        } else {
            ds /= 2.0;
            dk /= 2.0;
            if ds < 1e-12 && dk < 1e-15 {
                break;
            }
        }
    }
    (s, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_scaling_has_no_peak_and_best_is_the_maximum() {
        let points: Vec<(f64, f64)> = (1..=8).map(|n| (n as f64, 10.0 * n as f64)).collect();
        let got = fit(&points).unwrap();
        assert!(got.usl.sigma < 1e-6 && got.usl.kappa < 1e-9, "{got:?}");
        assert!((got.usl.lambda - 10.0).abs() < 1e-6);
        assert_eq!(got.best_workers(32), 32);
        assert!(got.r_squared > 0.999);
    }

    #[test]
    fn flat_throughput_is_all_contention() {
        let points = [(1.0, 50.0), (2.0, 50.0), (4.0, 50.0), (8.0, 50.0)];
        let got = fit(&points).unwrap();
        assert!(got.usl.sigma > 0.99, "{got:?}");
        assert_eq!(got.best_workers(8), 1);
    }

    #[test]
    fn bad_points_are_named() {
        let err = fit(&[(1.0, 1.0), (0.5, 1.0), (3.0, 1.0)]).unwrap_err();
        assert!(matches!(err, UslError::InvalidPoint { index: 1, .. }));
        let err = fit(&[(1.0, f64::NAN), (2.0, 1.0), (3.0, 1.0)]).unwrap_err();
        assert!(matches!(err, UslError::InvalidPoint { index: 0, .. }));
        assert_eq!(
            fit(&[(1.0, 0.0), (2.0, 0.0), (3.0, 0.0)]),
            Err(UslError::NoThroughput)
        );
    }
}
