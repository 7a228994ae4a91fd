//! `--timeout P%`: a time limit that follows the median run time of the jobs finished so far,
//! as GNU parallel's. The median comes from a histogram (two significant figures, a few tens
//! of KiB), so memory stays the same however many jobs run.

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::sync::lock;

/// A job time limit of a percentage of the median job time so far; no limit until a job
/// has finished.
///
/// ```
/// use pardo::command::RelativeTimeout;
/// use std::time::Duration;
///
/// let t = RelativeTimeout::new(200.0);
/// assert_eq!(t.limit(), None);
/// for ms in [10, 20, 30] {
///     t.finished(Duration::from_millis(ms));
/// }
/// let limit = t.limit().expect("jobs have finished");
/// assert!(limit >= Duration::from_millis(39) && limit <= Duration::from_millis(41));
/// ```
#[derive(Debug)]
pub struct RelativeTimeout {
    percent: f64,
    times: Mutex<Option<Histogram<u64>>>,
}

impl RelativeTimeout {
    /// A limit of `percent` % of the median job time.
    pub fn new(percent: f64) -> RelativeTimeout {
        RelativeTimeout {
            percent,
            // Microseconds from 1 to about 50 days (longer saturates); within 1%.
            times: Mutex::new(Histogram::new_with_bounds(1, 1 << 42, 2).ok()),
        }
    }

    /// The percentage of the median.
    pub fn percent(&self) -> f64 {
        self.percent
    }

    /// Counts the run time of a finished job.
    pub fn finished(&self, runtime: Duration) {
        if let Some(h) = lock(&self.times).as_mut() {
            let us = u64::try_from(runtime.as_micros()).unwrap_or(u64::MAX);
            h.saturating_record(us.max(1));
        }
    }

    /// The limit now: `percent` % of the median so far, or `None` before any job finished.
    pub fn limit(&self) -> Option<Duration> {
        let times = lock(&self.times);
        let h = times.as_ref().filter(|h| !h.is_empty())?;
        let median = h.value_at_quantile(0.5) as f64 / 1e6;
        Duration::try_from_secs_f64(median * self.percent / 100.0).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_follows_the_median_not_the_mean() {
        let t = RelativeTimeout::new(100.0);
        for ms in [10, 11, 12, 5000] {
            t.finished(Duration::from_millis(ms));
        }
        let limit = t.limit().unwrap();
        assert!(limit < Duration::from_millis(20), "{limit:?}");
    }

    #[test]
    fn no_limit_before_a_job_finished() {
        assert_eq!(RelativeTimeout::new(50.0).limit(), None);
    }
}
