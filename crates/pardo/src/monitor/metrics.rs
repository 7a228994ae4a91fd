//! Live metrics in the Prometheus text format, while the run goes: a [`Metrics`] sink that
//! counts what the recorder sees, and a [`MetricsServer`] that serves it over HTTP on a small
//! `std` listener thread (no web framework).
//!
//! The metrics (format version 0.0.4, which OpenMetrics scrapers read too):
//!
//! ```text
//! pardo_tasks_total{outcome="ok"|"failed"|"panicked"|"timed_out"|"killed"|"cancelled"}  counter
//! pardo_tasks_running                     gauge    tasks running now
//! pardo_tasks_queued                      gauge    submitted and not started
//! pardo_workers_target                    gauge    the concurrency asked for
//! pardo_workers_live                      gauge    the concurrency in effect
//! pardo_task_duration_seconds             histogram of task run times (attempts that ran)
//! pardo_task_cpu_seconds_total{mode="user"|"system"}  counter  CPU of finished tasks
//! pardo_run_elapsed_seconds               gauge    since the run began
//! ```
//!
//! The server listens on loopback unless told otherwise: [`Exposure::Public`] must be asked for
//! to bind any other address, since the metrics name the inputs' count and timing to whoever
//! can connect.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::monitor::{RecordSink, Recorder, Sample, TaskRecord};
use crate::task::Outcome;

/// Upper bounds of the duration histogram's buckets, in seconds (`+Inf` follows).
pub const DURATION_BUCKETS_S: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0,
];

const OUTCOMES: [Outcome; 6] = [
    Outcome::Ok,
    Outcome::Failed,
    Outcome::Panicked,
    Outcome::TimedOut,
    Outcome::Killed,
    Outcome::Cancelled,
];

fn outcome_index(o: Outcome) -> usize {
    match o {
        Outcome::Ok => 0,
        Outcome::Failed => 1,
        Outcome::Panicked => 2,
        Outcome::TimedOut => 3,
        Outcome::Killed => 4,
        Outcome::Cancelled => 5,
    }
}

/// Counts every record, sample and capacity change of a run, for [`Metrics::render`].
/// Each record costs a few relaxed atomic additions.
///
/// ```
/// use pardo::monitor::metrics::Metrics;
/// let pool = pardo::ThreadPool::builder().workers(2).build().unwrap();
/// let metrics = Metrics::attach(pool.recorder());
/// pool.map(0..10u64, |x| x + 1).chunk_size(1).for_each(drop);
/// let text = metrics.render();
/// assert!(text.contains("pardo_tasks_total{outcome=\"ok\"} 10\n"));
/// ```
pub struct Metrics {
    recorder: Recorder,
    outcomes: [AtomicU64; 6],
    /// Non-cumulative counts per bucket; the last is `+Inf`.
    buckets: [AtomicU64; DURATION_BUCKETS_S.len() + 1],
    duration_sum_ns: AtomicU64,
    cpu_user_ns: AtomicU64,
    cpu_sys_ns: AtomicU64,
    target: AtomicU64,
    live: AtomicU64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Attaches a new counter set to `recorder`: it counts every record from now on.
    pub fn attach(recorder: &Recorder) -> Arc<Metrics> {
        let workers = recorder
            .capacity_steps()
            .last()
            .map_or(recorder.run().workers, |s| s.1) as u64;
        let m = Arc::new(Metrics {
            recorder: recorder.clone(),
            outcomes: Default::default(),
            buckets: Default::default(),
            duration_sum_ns: AtomicU64::new(0),
            cpu_user_ns: AtomicU64::new(0),
            cpu_sys_ns: AtomicU64::new(0),
            target: AtomicU64::new(workers),
            live: AtomicU64::new(workers),
        });
        recorder.add_sink(m.clone());
        m
    }

    /// The metrics now, in the Prometheus text format.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let secs = |ns: u64| ns as f64 / 1e9;
        let c = self.recorder.counters();
        let mut t = String::with_capacity(2048);
        t.push_str(
            "# HELP pardo_tasks_total Task attempts ended, by outcome.\n\
             # TYPE pardo_tasks_total counter\n",
        );
        for (o, n) in OUTCOMES.iter().zip(&self.outcomes) {
            let _ = writeln!(
                t,
                "pardo_tasks_total{{outcome=\"{}\"}} {}",
                o.as_str(),
                load(n)
            );
        }
        let gauges = [
            ("pardo_tasks_running", "Tasks running now.", c.running),
            (
                "pardo_tasks_queued",
                "Tasks submitted and not started.",
                c.queued(),
            ),
            (
                "pardo_workers_target",
                "The concurrency the executor was asked to run at.",
                load(&self.target),
            ),
            (
                "pardo_workers_live",
                "The concurrency in effect.",
                load(&self.live),
            ),
        ];
        for (name, help, v) in gauges {
            let _ = write!(t, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n");
        }
        t.push_str(
            "# HELP pardo_task_duration_seconds Run time of task attempts that ran.\n\
             # TYPE pardo_task_duration_seconds histogram\n",
        );
        let mut cumulative = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += load(b);
            match DURATION_BUCKETS_S.get(i) {
                Some(le) => {
                    let _ = writeln!(
                        t,
                        "pardo_task_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
                    );
                }
                None => {
                    let _ = writeln!(
                        t,
                        "pardo_task_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
                    );
                }
            }
        }
        let _ = write!(
            t,
            "pardo_task_duration_seconds_sum {}\npardo_task_duration_seconds_count {cumulative}\n\
             # HELP pardo_task_cpu_seconds_total CPU time used by finished tasks.\n\
             # TYPE pardo_task_cpu_seconds_total counter\n\
             pardo_task_cpu_seconds_total{{mode=\"user\"}} {}\n\
             pardo_task_cpu_seconds_total{{mode=\"system\"}} {}\n\
             # HELP pardo_run_elapsed_seconds Time since the run began.\n\
             # TYPE pardo_run_elapsed_seconds gauge\n\
             pardo_run_elapsed_seconds {}\n",
            secs(load(&self.duration_sum_ns)),
            secs(load(&self.cpu_user_ns)),
            secs(load(&self.cpu_sys_ns)),
            secs(self.recorder.now_ns()),
        );
        t
    }
}

impl RecordSink for Metrics {
    fn on_record(&self, r: &TaskRecord) {
        self.outcomes[outcome_index(r.outcome)].fetch_add(1, Ordering::Relaxed);
        self.cpu_user_ns.fetch_add(r.cpu_user_ns, Ordering::Relaxed);
        self.cpu_sys_ns.fetch_add(r.cpu_sys_ns, Ordering::Relaxed);
        if !r.ran() {
            return;
        }
        let wall = r.wall_ns();
        let s = wall as f64 / 1e9;
        let bucket = DURATION_BUCKETS_S
            .iter()
            .position(|&le| s <= le)
            .unwrap_or(DURATION_BUCKETS_S.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.duration_sum_ns.fetch_add(wall, Ordering::Relaxed);
    }
    fn on_sample(&self, s: &Sample) {
        self.target.store(s.target_workers, Ordering::Relaxed);
        self.live.store(s.live_workers, Ordering::Relaxed);
    }
    fn on_capacity(&self, _at_ns: u64, workers: usize) {
        self.live.store(workers as u64, Ordering::Relaxed);
    }
}

/// Who may connect to a [`MetricsServer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposure {
    /// Only a loopback address may be bound (the default).
    LoopbackOnly,
    /// Any address may be bound: the caller asked for it explicitly.
    Public,
}

/// Why a metrics server could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address is not a loopback address and [`Exposure::Public`] was not given.
    #[error(
        "{0} is not a loopback address: the metrics would be open to the network; use \
         127.0.0.1 or [::1], or allow it explicitly"
    )]
    NotLoopback(SocketAddr),
    /// Binding or starting the thread failed.
    #[error("cannot serve metrics on {addr}: {source}")]
    Io {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
}

/// Serves a run's [`Metrics`] at `GET /metrics` (and `/`) on its own thread; stops when
/// dropped or [stopped](MetricsServer::stop). One connection at a time, each closed after one
/// response; a client that sends nothing is dropped after two seconds.
///
/// ```
/// use std::io::{Read, Write};
/// use pardo::monitor::metrics::{Exposure, MetricsServer};
/// let pool = pardo::ThreadPool::builder().workers(2).build().unwrap();
/// let server = MetricsServer::start(pool.recorder(), "127.0.0.1:0".parse().unwrap(),
///                                   Exposure::LoopbackOnly).unwrap();
/// pool.submit(|| 1).wait().unwrap();
/// let mut conn = std::net::TcpStream::connect(server.local_addr()).unwrap();
/// conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
/// let mut reply = String::new();
/// conn.read_to_string(&mut reply).unwrap();
/// assert!(reply.starts_with("HTTP/1.1 200 OK"));
/// assert!(reply.contains("pardo_tasks_total{outcome=\"ok\"} 1"));
/// ```
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Attaches [`Metrics`] to `recorder` and serves them on `addr` (port 0 picks a free
    /// port; see [`local_addr`](MetricsServer::local_addr)).
    pub fn start(
        recorder: &Recorder,
        addr: SocketAddr,
        exposure: Exposure,
    ) -> Result<MetricsServer, MetricsError> {
        if !addr.ip().is_loopback() && exposure != Exposure::Public {
            return Err(MetricsError::NotLoopback(addr));
        }
        let io = |source| MetricsError::Io { addr, source };
        let listener = TcpListener::bind(addr).map_err(io)?;
        let local = listener.local_addr().map_err(io)?;
        let metrics = Metrics::attach(recorder);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("pardo-metrics".into())
            .spawn(move || serve(&listener, &metrics, &flag))
            .map_err(io)?;
        Ok(MetricsServer {
            addr: local,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and waits for the thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            // Wake the blocking accept; if the connection fails the listener is gone already.
            let mut wake = self.addr;
            if wake.ip().is_unspecified() {
                wake.set_ip(match wake {
                    SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            if TcpStream::connect_timeout(&wake, Duration::from_secs(1)).is_ok() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.halt();
    }
}

fn serve(listener: &TcpListener, metrics: &Metrics, stop: &AtomicBool) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(conn) = conn {
            // A client that misbehaves only loses its own answer.
            let _ = answer(conn, metrics);
        }
    }
}

fn answer(conn: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut first = String::new();
    reader.by_ref().take(8192).read_line(&mut first)?;
    // Read the rest of the head, so closing does not reset a connection with unread data.
    let mut line = String::new();
    let mut head = first.len();
    while head < 16 * 1024 {
        line.clear();
        let n = reader.by_ref().take(8192).read_line(&mut line)?;
        head += n;
        if n == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut words = first.split_ascii_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, kind, body) = match (method, path) {
        ("GET", "/metrics" | "/") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        ("GET", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "pardo serves its metrics at /metrics\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET\n".to_owned(),
        ),
    };
    let mut out = conn;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::{Retention, RunRecord};

    fn get(addr: SocketAddr, request: &str) -> String {
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.write_all(request.as_bytes()).unwrap();
        let mut reply = String::new();
        conn.read_to_string(&mut reply).unwrap();
        reply
    }

    #[test]
    fn counts_outcomes_buckets_and_cpu_and_pins_the_format() {
        let rec = Recorder::new(RunRecord::now("command", 3), true, Retention::SummaryOnly);
        let m = Metrics::attach(&rec);
        let w = rec.worker(1);
        for (i, (wall_ns, outcome)) in [
            (2_000_000, Outcome::Ok),
            (200_000_000, Outcome::Ok),
            (2_000_000_000, Outcome::Failed),
            (0, Outcome::Cancelled),
        ]
        .into_iter()
        .enumerate()
        {
            let id = rec.submit(1);
            let mut r = TaskRecord::new(id, 1, 0, 0, wall_ns);
            r.outcome = outcome;
            r.cpu_user_ns = 1_000_000 * i as u64;
            r.cpu_sys_ns = 500_000_000;
            w.write(r);
        }
        m.on_sample(&Sample {
            target_workers: 4,
            live_workers: 3,
            ..Sample::default()
        });
        let text = m.render();
        let body: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("pardo_run_elapsed"))
            .collect();
        assert_eq!(
            body,
            [
                "pardo_tasks_total{outcome=\"ok\"} 2",
                "pardo_tasks_total{outcome=\"failed\"} 1",
                "pardo_tasks_total{outcome=\"panicked\"} 0",
                "pardo_tasks_total{outcome=\"timed_out\"} 0",
                "pardo_tasks_total{outcome=\"killed\"} 0",
                "pardo_tasks_total{outcome=\"cancelled\"} 1",
                "pardo_tasks_running 0",
                "pardo_tasks_queued 0",
                "pardo_workers_target 4",
                "pardo_workers_live 3",
                "pardo_task_duration_seconds_bucket{le=\"0.001\"} 0",
                "pardo_task_duration_seconds_bucket{le=\"0.005\"} 1",
                "pardo_task_duration_seconds_bucket{le=\"0.01\"} 1",
                "pardo_task_duration_seconds_bucket{le=\"0.05\"} 1",
                "pardo_task_duration_seconds_bucket{le=\"0.1\"} 1",
                "pardo_task_duration_seconds_bucket{le=\"0.25\"} 2",
                "pardo_task_duration_seconds_bucket{le=\"0.5\"} 2",
                "pardo_task_duration_seconds_bucket{le=\"1\"} 2",
                "pardo_task_duration_seconds_bucket{le=\"5\"} 3",
                "pardo_task_duration_seconds_bucket{le=\"10\"} 3",
                "pardo_task_duration_seconds_bucket{le=\"60\"} 3",
                "pardo_task_duration_seconds_bucket{le=\"300\"} 3",
                "pardo_task_duration_seconds_bucket{le=\"+Inf\"} 3",
                "pardo_task_duration_seconds_sum 2.202",
                "pardo_task_duration_seconds_count 3",
                "pardo_task_cpu_seconds_total{mode=\"user\"} 0.006",
                "pardo_task_cpu_seconds_total{mode=\"system\"} 2",
            ]
        );
        assert!(text.contains("# TYPE pardo_task_duration_seconds histogram\n"));
    }

    #[test]
    fn a_public_address_needs_asking_and_other_paths_are_not_found() {
        let rec = Recorder::new(RunRecord::now("command", 1), true, Retention::SummaryOnly);
        let err = MetricsServer::start(&rec, "0.0.0.0:0".parse().unwrap(), Exposure::LoopbackOnly)
            .unwrap_err();
        assert!(matches!(err, MetricsError::NotLoopback(_)), "{err}");
        assert!(err.to_string().contains("not a loopback address"));

        let server = MetricsServer::start(&rec, "[::1]:0".parse().unwrap(), Exposure::LoopbackOnly)
            .or_else(|_| {
                MetricsServer::start(&rec, "127.0.0.1:0".parse().unwrap(), Exposure::LoopbackOnly)
            })
            .unwrap();
        let addr = server.local_addr();
        assert!(get(addr, "GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(addr, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        let ok = get(addr, "GET /metrics?x=1 HTTP/1.0\r\n\r\n");
        assert!(ok.contains("Content-Type: text/plain; version=0.0.4"));
        server.stop();
        assert!(
            TcpStream::connect(addr).is_err(),
            "stopped: nothing listens on {addr}"
        );
    }
}
