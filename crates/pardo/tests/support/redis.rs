//! A real `redis-server` for the cluster tests: started on a free loopback port in a temporary
//! directory with the append-only file on, stopped by its PID when dropped.
//!
//! Shared by the library's and the CLI's tests (`#[path]`-included by the latter).
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One `redis-server` of a test.
pub struct Redis {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    l.local_addr().expect("its address").port()
}

impl Redis {
    /// Starts a server, and waits until it answers PING. Panics naming `redis-server` when
    /// it is not installed: these tests never skip.
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut r = Redis {
            child: None,
            dir,
            port: free_port(),
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            // Every write on disk before Redis answers: a kill -9 of Redis loses nothing
            // acknowledged, which the restart test relies on.
            .args(["--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}); install it (Debian: apt-get install redis-server)")
            });
        self.child = Some(child);
        for _ in 0..1000 {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server did not answer on port {}", self.port);
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// True when the server answers PING with PONG (and is not still loading).
    pub fn ping(&self) -> bool {
        self.cmd(&["PING"]).is_some_and(|r| r == "+PONG")
    }

    /// Sends one command and returns the first line of the reply, or None when unreachable.
    pub fn cmd(&self, args: &[&str]) -> Option<String> {
        self.reply(args).map(|(first, _)| first)
    }

    /// A bulk-string reply (e.g. of HGET); None for nil or when unreachable.
    pub fn get(&self, args: &[&str]) -> Option<String> {
        let (first, body) = self.reply(args)?;
        first.starts_with('$').then_some(body).flatten()
    }

    /// The first line of the reply, and the line after it (the body of a bulk string).
    fn reply(&self, args: &[&str]) -> Option<(String, Option<String>)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        let first = line.trim_end().to_string();
        let body = if first.starts_with('$') && first != "$-1" {
            let mut b = String::new();
            r.read_line(&mut b).ok()?;
            Some(b.trim_end().to_string())
        } else {
            None
        };
        Some((first, body))
    }

    /// An integer reply (`:N`), e.g. of DBSIZE or SCARD.
    pub fn int(&self, args: &[&str]) -> i64 {
        let r = self.cmd(args).expect("redis answers");
        r.strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{args:?} answered {r:?}"))
    }

    /// The PID of the server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running server").id()
    }

    /// `kill -9` of the server, reaped.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and directory (it replays its AOF).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill9();
    }
}
