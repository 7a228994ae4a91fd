//! The CPU-bound / I/O-bound verdict.

use serde::{Deserialize, Serialize};

/// What kind of work a run was, judged from how much of its tasks' time was CPU time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Workload {
    /// Tasks used the CPU nearly all the time they ran, or kept every usable core busy.
    CpuBound,
    /// Tasks spent most of their time waiting.
    IoBound,
    /// In between.
    Mixed,
    /// Nothing ran, so nothing can be said.
    Unknown,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Workload::CpuBound => "CPU-bound",
            Workload::IoBound => "I/O-bound",
            Workload::Mixed => "mixed",
            Workload::Unknown => "unknown",
        })
    }
}

/// CPU ratio at or above which work is CPU-bound.
pub(crate) const CPU_BOUND_RATIO: f64 = 0.75;
/// CPU ratio at or below which work is I/O-bound.
pub(crate) const IO_BOUND_RATIO: f64 = 0.25;

/// The verdict from how much of their time tasks wanted the CPU, and the CPU saturation (Σ cpu /
/// (wall × usable cores)).
///
/// `cpu_share` is the CPU demand ((Σ cpu + Σ wait for a core) / Σ wall) where the wait for a
/// core was measured, else the CPU ratio (Σ cpu / Σ wall). Demand is the better measure: on a
/// crowded machine CPU-bound tasks wait for a core and their CPU ratio falls, but they never
/// stopped wanting the CPU. Without that measurement, the saturation still shows when more
/// workers than cores kept every core full.
///
pub(crate) fn classify(
    cpu_ratio: Option<f64>,
    saturation: f64,
    workers: f64,
    cores: usize,
) -> Workload {
    let Some(ratio) = cpu_ratio else {
        return Workload::Unknown;
    };
    let oversubscribed = workers > cores as f64 + 0.5;
    if ratio >= CPU_BOUND_RATIO || (oversubscribed && saturation >= 0.85) {
        Workload::CpuBound
    } else if ratio <= IO_BOUND_RATIO {
        Workload::IoBound
    } else {
        Workload::Mixed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_follows_cpu_share_and_saturation() {
        assert_eq!(classify(Some(0.97), 0.97, 2.0, 2), Workload::CpuBound);
        assert_eq!(classify(Some(0.02), 0.02, 2.0, 2), Workload::IoBound);
        assert_eq!(classify(Some(0.5), 0.5, 2.0, 2), Workload::Mixed);
        assert_eq!(classify(None, 0.0, 2.0, 2), Workload::Unknown);
        // 8 CPU-bound workers on 2 cores: each gets a quarter of a core, the cores are full.
        assert_eq!(classify(Some(0.25), 0.99, 8.0, 2), Workload::CpuBound);
    }
}
