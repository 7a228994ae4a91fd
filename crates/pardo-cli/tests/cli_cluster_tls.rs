//! `rediss://`: `pardo --cluster` and `pardo worker` through a real `redis-server` that speaks
//! only TLS, with a certificate from a throwaway authority (made with `openssl`), trusted
//! through `SSL_CERT_FILE`; and a clear, immediate refusal when the authority is not trusted.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::pardo;
use support::redis::free_port;

/// Runs one `openssl` command in `dir`; panics naming the program when it is missing.
fn openssl(dir: &Path, args: &[&str]) {
    let st = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl ({e}); install it (Debian: apt-get install openssl)")
        });
    assert!(st.success(), "openssl {args:?} failed");
}

/// A `redis-server` listening only with TLS on loopback; killed when dropped.
struct TlsRedis {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl TlsRedis {
    fn start() -> TlsRedis {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let key = ["-newkey", "rsa:2048", "-nodes"];
        openssl(
            d,
            &[
                &["req", "-x509", "-days", "2"],
                &key[..],
                &[
                    "-subj",
                    "/CN=pardo test authority",
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                ],
            ]
            .concat(),
        );
        openssl(
            d,
            &[
                &["req"],
                &key[..],
                &[
                    "-subj",
                    "/CN=localhost",
                    "-keyout",
                    "srv.key",
                    "-out",
                    "srv.csr",
                ],
            ]
            .concat(),
        );
        std::fs::write(d.join("ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "srv.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "srv.crt",
                "-days",
                "2",
                "-extfile",
                "ext",
            ],
        );
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--tls-auth-clients", "no"])
            .args(["--tls-cert-file", "srv.crt", "--tls-key-file", "srv.key"])
            .args(["--tls-ca-cert-file", "ca.crt", "--dir"])
            .arg(d)
            .current_dir(d)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}); install it (Debian: apt-get install redis-server)")
            });
        let r = TlsRedis { child, dir, port };
        // Up once its TLS port accepts connections.
        for _ in 0..1000 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return r;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server did not listen on TLS port {port}");
    }

    fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.port)
    }

    fn authority(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `pardo worker` trusting `ca`; killed when dropped.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_run_through_a_tls_only_redis_gives_every_output() {
    let redis = TlsRedis::start();
    let url = redis.url();
    let _w = Worker(
        Command::new(assert_cmd::cargo::cargo_bin("pardo"))
            .args(["worker", &url, "-j", "2"])
            .env("SSL_CERT_FILE", redis.authority())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pardo worker starts"),
    );
    let out = pardo()
        .args([
            "--cluster",
            &url,
            "-k",
            "echo",
            "tls",
            "{}",
            ":::",
            "1",
            "2",
            "3",
        ])
        .env("SSL_CERT_FILE", redis.authority())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "tls 1\ntls 2\ntls 3\n"
    );
}

#[test]
fn an_untrusted_certificate_is_refused_at_once_and_named() {
    let redis = TlsRedis::start();
    // Trust only an unrelated authority: the server's certificate has an unknown issuer.
    let other = tempfile::tempdir().unwrap();
    openssl(
        other.path(),
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=other",
            "-keyout",
            "o.key",
            "-out",
            "o.crt",
        ],
    );
    // Without the fix this waited out the reconnect patience (a year for a worker); the
    // assertion is on the outcome, the exit status and the message, not on a time.
    let out = pardo()
        .args(["--cluster", &redis.url(), "echo", ":::", "1"])
        .env("SSL_CERT_FILE", other.path().join("o.crt"))
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
    assert!(stderr.contains(&redis.url()), "{stderr}");
}
