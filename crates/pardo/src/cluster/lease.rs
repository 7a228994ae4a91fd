//! Leases: the entries a worker holds, renewed while it holds them, and the sweep that takes
//! over entries whose worker went silent.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::protocol::{self, scripts, Entry, Keys, Link, Settings, GROUP};
use super::ClusterError;
use crate::sync::lock;

/// The entries one worker holds, by run, with each run's lease.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    held: Mutex<HashMap<String, (Duration, HashSet<String>)>>,
    /// Entries found taken by another worker at renewal.
    pub lost: AtomicU64,
}

impl Leases {
    pub fn hold(&self, run: &str, lease: Duration, id: &str) {
        lock(&self.held)
            .entry(run.to_string())
            .or_insert_with(|| (lease, HashSet::new()))
            .1
            .insert(id.to_string());
    }

    pub fn release(&self, run: &str, id: &str) {
        let mut held = lock(&self.held);
        if let Some((_, ids)) = held.get_mut(run) {
            ids.remove(id);
            if ids.is_empty() {
                held.remove(run);
            }
        }
    }

    /// True while this worker still holds `id` of `run` (no renewal found it taken).
    pub fn holds(&self, run: &str, id: &str) -> bool {
        lock(&self.held)
            .get(run)
            .is_some_and(|(_, ids)| ids.contains(id))
    }

    /// How often to renew: a quarter of the shortest lease held (a quarter second when
    /// nothing is held).
    pub fn interval(&self) -> Duration {
        lock(&self.held)
            .values()
            .map(|(l, _)| *l / 4)
            .min()
            .unwrap_or(Duration::from_millis(250))
            .max(Duration::from_millis(5))
    }

    /// Renews every held entry once; entries another worker has taken are let go.
    pub fn renew(&self, link: &mut Link, consumer: &str) -> Result<(), ClusterError> {
        let snapshot: Vec<(String, Vec<String>)> = lock(&self.held)
            .iter()
            .map(|(run, (_, ids))| {
                let mut ids: Vec<String> = ids.iter().cloned().collect();
                // Oldest first: the script scans the worker's pending entries between the two.
                ids.sort_by_key(|id| protocol::id_order(id));
                (run.clone(), ids)
            })
            .collect();
        for (run, ids) in snapshot {
            let keys = Keys::new(&run);
            let lost: Vec<String> = match link.call(|c| {
                scripts()
                    .renew
                    .key(keys.jobs())
                    .arg(GROUP)
                    .arg(consumer)
                    .arg(&ids[..])
                    .invoke::<redis::Value>(c)
            }) {
                Ok(v) => protocol::strings(&v),
                // The run ended and its stream is gone: nothing to hold there.
                Err(e) if protocol::run_gone(&e) => ids,
                Err(e) => return Err(e),
            };
            for id in lost {
                self.lost.fetch_add(1, Ordering::Relaxed);
                self.release(&run, &id);
            }
        }
        Ok(())
    }

    /// Renews until `stop` is set; a renewal that fails (Redis away past the patience) is
    /// tried again at the next tick.
    pub fn keep_renewing(&self, mut link: Link, consumer: &str, stop: &AtomicBool) {
        while !stop.load(Ordering::SeqCst) {
            let _ = self.renew(&mut link, consumer);
            sleep_unless(stop, self.interval());
        }
    }
}

/// Sleeps `d` in small steps, returning early once `stop` is set.
pub(crate) fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let step = Duration::from_millis(10);
    let mut left = d;
    while !left.is_zero() && !stop.load(Ordering::SeqCst) {
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
}

/// Takes up to `count` entries of `run` idle longer than `lease` (their worker went silent),
/// going on from `cursor` and moving it. `XAUTOCLAIM` counts a new delivery for each.
pub(crate) fn reclaim(
    link: &mut Link,
    keys: &Keys,
    consumer: &str,
    lease: Duration,
    cursor: &mut String,
    count: usize,
) -> Result<Vec<Entry>, ClusterError> {
    let v: redis::Value = link.call(|c| {
        redis::cmd("XAUTOCLAIM")
            .arg(keys.jobs())
            .arg(GROUP)
            .arg(consumer)
            .arg(lease.as_millis() as u64)
            .arg(cursor.as_str())
            .arg("COUNT")
            .arg(count)
            .query(c)
    })?;
    let (next, got) = protocol::autoclaimed(&v);
    *cursor = next;
    Ok(got)
}

/// How a worker takes entries, round after round: the sweep of silent workers' entries (every
/// quarter of the shortest lease, each run from its own cursor), else a read of new ones. Used
/// by the command worker and the serving worker alike.
#[derive(Debug)]
pub(crate) struct Taker {
    cursors: HashMap<String, String>,
    swept: Instant,
    seen_reconnects: u64,
}

impl Taker {
    pub fn new() -> Taker {
        Taker {
            cursors: HashMap::new(),
            swept: Instant::now(),
            seen_reconnects: 0,
        }
    }

    /// Up to `want` entries per run of `runs` for `consumer`, with their run: those whose
    /// worker went silent when a sweep is due, else new ones (waiting up to 100 ms). The flag
    /// says a run's stream was gone (the run ended: read the set of runs again).
    pub fn take(
        &mut self,
        link: &mut Link,
        consumer: &str,
        runs: &HashMap<String, Arc<Settings>>,
        leases: &Leases,
        want: usize,
        reclaimed: &mut u64,
    ) -> Result<(Vec<(String, Entry)>, bool), ClusterError> {
        self.cursors.retain(|r, _| runs.contains_key(r));
        let mut got: Vec<(String, Entry)> = Vec::new();
        let mut gone = false;
        let sweep_every = runs
            .values()
            .map(|s| s.lease / 4)
            .min()
            .unwrap_or(Duration::from_millis(250));
        if self.swept.elapsed() >= sweep_every {
            self.swept = Instant::now();
            for (run, settings) in runs {
                let keys = Keys::new(run);
                let cursor = self
                    .cursors
                    .entry(run.clone())
                    .or_insert_with(|| "0-0".into());
                match reclaim(link, &keys, consumer, settings.lease, cursor, want) {
                    Ok(e) => {
                        *reclaimed += e.len() as u64;
                        got.extend(e.into_iter().map(|e| (run.clone(), e)));
                    }
                    Err(e) if protocol::run_gone(&e) => gone = true,
                    Err(e) => return Err(e),
                }
            }
        }
        if !got.is_empty() {
            return Ok((got, gone));
        }
        let names: Vec<&String> = runs.keys().collect();
        // A read whose reply was lost (the connection dropped, Redis restarted) may have
        // delivered entries this worker never saw: after a reconnect, read its own pending
        // entries again (id 0) and take up those it does not hold.
        let recovering = link.reconnects != self.seen_reconnects;
        self.seen_reconnects = link.reconnects;
        let read = protocol::read_group(
            link,
            consumer,
            &names,
            if recovering { 1000 } else { want },
            if recovering { "0" } else { ">" },
        );
        match read {
            Ok(streams) => {
                for (run, entries) in streams {
                    got.extend(
                        entries
                            .into_iter()
                            .filter(|e| !recovering || !leases.holds(&run, &e.id))
                            .map(|e| (run.clone(), e)),
                    );
                }
                Ok((got, gone))
            }
            Err(e) if protocol::run_gone(&e) => Ok((got, true)),
            Err(e) => Err(e),
        }
    }
}
