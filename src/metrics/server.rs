//! `SOLIDQ_METRICS_BIND`: a tiny HTTP/1.1 responder on threads of its own, so an embedded
//! runtime serves `/metrics`, `/health/live` and `/health/ready` without actix-web. One
//! request per connection (`Connection: close`); anything but `GET` of those paths is a 404
//! (or 405 for another method).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{Exporter, Metrics, CONTENT_TYPE};
use crate::health::{self, Health};
use crate::store::SharedStore;

/// How long a connection may take to send its request line and headers.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What the responder answers from.
#[derive(Clone)]
pub(crate) struct Endpoints {
    pub(crate) exporter: Exporter,
    pub(crate) store: SharedStore,
    pub(crate) metrics: Arc<Metrics>,
}

/// A running responder; stops when dropped.
pub(crate) struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl MetricsServer {
    /// Binds `addr` and starts answering.
    pub(crate) fn start(addr: SocketAddr, endpoints: Endpoints) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new().name("solidq-metrics".into()).spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let endpoints = endpoints.clone();
                let _ = std::thread::Builder::new()
                    .name("solidq-metrics-request".into())
                    .spawn(move || answer(stream, &endpoints));
            }
        })?;
        Ok(MetricsServer { addr, stop })
    }

    /// The address it listens on (with the port chosen when `:0` was asked).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn answer(stream: TcpStream, endpoints: &Endpoints) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Headers are read and ignored, up to the blank line.
    let mut header = String::new();
    while reader.read_line(&mut header).map(|n| n > 2).unwrap_or(false) {
        header.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => (200, CONTENT_TYPE, endpoints.exporter.scrape()),
        ("GET", "/health/live") => probe(health::live(&endpoints.metrics)),
        ("GET", "/health/ready") => probe(health::ready(&endpoints.store, &endpoints.metrics)),
        (_, "/metrics" | "/health/live" | "/health/ready") => (405, "text/plain; charset=utf-8", "GET only\n".into()),
        _ => (404, "text/plain; charset=utf-8", "not found: /metrics, /health/live, /health/ready\n".into()),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let mut stream = &stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

fn probe(health: Health) -> (u16, &'static str, String) {
    (health.status_code(), "text/plain; charset=utf-8", format!("{}\n", health.reason))
}
