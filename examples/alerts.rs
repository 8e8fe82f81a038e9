//! Alert events: `cargo run --example alerts`.
//!
//! Starts a tiny webhook receiver on a local port, then a runtime (SQLite in a temporary
//! directory, or `SOLIDQ_DATABASE_URL`) whose event subscriber turns every event into an
//! error-level log line and a JSON `POST` to that receiver. A job that fails for good produces
//! a `job_failed` event; the example prints what the receiver got and exits 0 (1 if nothing
//! arrived within 15 s).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use slog::error;
use solidq::{Config, DatabaseUrl, Event, Job, JobError, Runtime};

/// A charge the payment provider refuses: it fails for good on its first attempt.
#[derive(Serialize, Deserialize)]
struct ChargeCard {
    order: u32,
}

impl Job for ChargeCard {
    const KIND: &'static str = "billing.charge_card";
    const QUEUE: &'static str = "billing";
}

/// Accepts webhook POSTs on a local port and hands each body to the returned channel.
fn webhook_receiver() -> std::io::Result<(SocketAddr, mpsc::Receiver<String>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut length = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
            }
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        }
    });
    Ok((addr, rx))
}

/// POSTs `body` as JSON to `addr` (what a Slack or PagerDuty webhook call would be).
fn post_json(addr: SocketAddr, body: &str) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    write!(
        stream,
        "POST /hooks/solidq HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (webhook, received) = webhook_receiver()?;
    let dir = tempfile::tempdir()?;
    let mut config = Config::from_env()?;
    if std::env::var_os("SOLIDQ_DATABASE_URL").is_none() {
        config.database_url = DatabaseUrl::Sqlite(dir.path().join("alerts.sqlite3"));
    }
    let (logger, _guard) = solidq::logging::init(&config);
    let alert_logger = logger.clone();
    let runtime = Runtime::new(config, logger)?
        .register_async::<ChargeCard, _, _>(|job, _| async move {
            Err(JobError::permanent(format!("card declined for order {}", job.order)))
        })
        // Runs on solidq's event thread, never on a worker: a slow webhook delays no job.
        .on_event(move |event: &Event| {
            let json = serde_json::to_string(event).unwrap_or_default();
            error!(alert_logger, "solidq alert"; "event" => event.name(), "details" => &json);
            if let Err(err) = post_json(webhook, &json) {
                error!(alert_logger, "webhook failed"; "error" => %err);
            }
        });

    let system = actix::System::new();
    let got = system.block_on(async move {
        let handle = runtime.start()?;
        handle.queue().enqueue(ChargeCard { order: 1042 }).await?;
        let got = actix_rt::task::spawn_blocking(move || received.recv_timeout(Duration::from_secs(15)).ok())
            .await
            .unwrap_or(None);
        handle.shutdown().await;
        Ok::<_, Box<dyn std::error::Error>>(got)
    })?;
    match got {
        Some(body) => {
            println!("webhook received: {body}");
            Ok(())
        }
        None => {
            eprintln!("no webhook call arrived within 15 s");
            std::process::exit(1);
        }
    }
}
