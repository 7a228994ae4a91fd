//! A local HTTP server on 127.0.0.1 and two clients for it: the I/O-bound workload of the
//! examples, `pardo demo` and the benchmarks. Everything stays on the loopback interface.
//!
//! The server (hyper, HTTP/1.1) answers every request after a fixed delay — standing in for a
//! remote service's latency — with a small body. [`get_blocking`] is a plain `std::net` client
//! for threads and worker processes; [`get`] is a hyper client for async tasks.
//!
//! ```
//! use std::time::Duration;
//! let server = pardo_demo::loopback::LoopbackServer::start(Duration::from_millis(1)).unwrap();
//! let bytes = pardo_demo::loopback::get_blocking(&server.addr().to_string()).unwrap();
//! assert_eq!(bytes, pardo_demo::loopback::BODY.len());
//! ```

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// What the server answers with.
pub const BODY: &[u8] = b"pardo loopback: ok\n";

/// An HTTP server on an ephemeral port of 127.0.0.1, running on a runtime of its own until
/// dropped.
#[derive(Debug)]
pub struct LoopbackServer {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl LoopbackServer {
    /// Starts the server; each response is sent `delay` after its request arrived.
    pub fn start(delay: Duration) -> io::Result<LoopbackServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pardo-loopback")
            .enable_all()
            .build()?;
        let listener = runtime.block_on(async { listen(SocketAddr::from(([127, 0, 0, 1], 0))) })?;
        let addr = listener.local_addr()?;
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(BODY),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(LoopbackServer {
            addr,
            runtime: Some(runtime),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Connections the kernel may hold for the server before it accepts them. `TcpListener::bind`
/// asks for 128, as the standard library does; with more clients connecting at once than that,
/// the kernel drops their SYNs and each one retries after its 1 s retransmission timeout — which
/// is what held 256 requests in flight to under 1,000 requests/s. The kernel caps this at
/// `net.core.somaxconn` (4096 by default).
const BACKLOG: u32 = 4096;

/// A listener on `addr` with room for [`BACKLOG`] connections not yet accepted.
fn listen(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// `GET /` from `addr` (`127.0.0.1:port`) on a new connection, blocking; returns the body's
/// length. A minimal HTTP/1.1 client: `Connection: close`, the body is what follows the
/// headers until the server closes.
pub fn get_blocking(addr: &str) -> io::Result<usize> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::with_capacity(256);
    stream.read_to_end(&mut response)?;
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no end of HTTP headers"))?;
    if !response.starts_with(b"HTTP/1.1 200") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "status is not 200",
        ));
    }
    Ok(response.len() - head_end - 4)
}

/// `GET /` from `addr` with hyper on a new connection; returns the body's length.
pub async fn get(addr: SocketAddr) -> io::Result<usize> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    let driver = tokio::spawn(conn);
    let req = Request::get("/")
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(io::Error::other)?;
    let res = sender.send_request(req).await.map_err(io::Error::other)?;
    if res.status() != hyper::StatusCode::OK {
        return Err(io::Error::other(format!("status {}", res.status())));
    }
    let body = res.into_body().collect().await.map_err(io::Error::other)?;
    drop(sender);
    let _ = driver.await;
    Ok(body.to_bytes().len())
}

pardo::task_fn! {
    /// Fetches `GET /` from a loopback address with [`get_blocking`]; the body's length, or the
    /// I/O error as text (task results must be serializable).
    pub Fetch(addr: String) -> Result<usize, String> {
        get_blocking(&addr).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_clients_read_the_body() {
        let server = LoopbackServer::start(Duration::ZERO).unwrap();
        assert_eq!(
            get_blocking(&server.addr().to_string()).unwrap(),
            BODY.len()
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(get(server.addr())).unwrap(), BODY.len());
    }

    /// More clients than `TcpListener::bind`'s backlog of 128 connect at once and none is
    /// dropped: with nothing accepting, every handshake must fit in the kernel's queue.
    #[test]
    fn the_listener_holds_hundreds_of_connections_not_yet_accepted() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _in_runtime = rt.enter();
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let addr = listener.local_addr().unwrap();
        // A dropped SYN is retried for minutes; the timeout only turns that into a failure.
        let hang = Duration::from_secs(10);
        let connected: Vec<TcpStream> = (0..300)
            .map(|i| {
                TcpStream::connect_timeout(&addr, hang)
                    .unwrap_or_else(|e| panic!("connection {i} was not queued: {e}"))
            })
            .collect();
        assert_eq!(connected.len(), 300);
    }
}
