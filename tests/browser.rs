//! The dashboard as a person uses it, in headless Chromium driven through chromedriver (the
//! W3C WebDriver protocol, spoken as JSON over the plain HTTP client below: no crate).
//! Loads every page, clicks "Retry" on a failed job and "Pause" on a queue, checks the
//! database changed, and saves a PNG screenshot of every page under
//! `target/browser-screenshots/<backend>-<page>.png`.
//!
//! Needs `/usr/bin/chromedriver` and `/usr/bin/chromium` (Debian's `chromium-driver` and
//! `chromium`), or the paths in `SOLIDQ_CHROMEDRIVER` and `SOLIDQ_CHROMIUM`; without them the
//! test prints SKIPPED and passes.

mod common;
mod dashboard_seed;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{for_each_backend, TestDb};
use serde_json::{json, Value};
use solidq::dashboard::{self, DashboardOptions, ProbeAnswer};

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

fn tool(var: &str, default: &str) -> Option<PathBuf> {
    let path = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    path.exists().then_some(path)
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"), PathBuf::from);
    target.join("browser-screenshots")
}

/// One HTTP/1.1 exchange (chromedriver does not answer HTTP/1.0): the status and the JSON body,
/// read up to its Content-Length.
fn http(address: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut stream = TcpStream::connect(address).unwrap_or_else(|err| panic!("connecting to {address}: {err}"));
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let payload = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let mut chunk = [0u8; 65536];
    let (head_len, content_length) = loop {
        let n = stream.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            return (0, Value::Null);
        }
        response.extend_from_slice(&chunk[..n]);
        if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (end + 4, length);
        }
    };
    while response.len() < head_len + content_length {
        let n = stream.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&response[..head_len]);
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, serde_json::from_slice(&response[head_len..]).unwrap_or(Value::Null))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A chromedriver process and one browser session; both end when dropped.
struct Browser {
    driver: Child,
    address: SocketAddr,
    session: String,
}

impl Browser {
    fn start(chromedriver: &PathBuf, chromium: &PathBuf) -> Browser {
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let address: SocketAddr = ([127, 0, 0, 1], port).into();
        let started = Instant::now();
        while TcpStream::connect(address).is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not listen on {address}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1366,1000", "--hide-scrollbars"]
            }
        }}});
        let (status, answer) = http(address, "POST", "/session", Some(&capabilities));
        let mut browser = Browser { driver, address, session: String::new() };
        assert_eq!(status, 200, "creating a browser session: {answer}");
        browser.session = answer["value"]["sessionId"].as_str().expect("a session id").to_string();
        browser
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = http(self.address, method, &format!("/session/{}{path}", self.session), body.as_ref());
        assert_eq!(status, 200, "{method} {path}: {answer}");
        answer["value"].clone()
    }

    fn open(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    fn title(&self) -> String {
        self.call("GET", "/title", None).as_str().unwrap_or_default().to_string()
    }

    /// Waits for the page titled `title` (a click's form submission may still be loading).
    fn wait_for_title(&self, title: &str) {
        let wanted = format!("{title} · solidq");
        let started = Instant::now();
        loop {
            let now = self.title();
            if now == wanted {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "expected the page {wanted:?}, still on {now:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn source(&self) -> String {
        self.call("GET", "/source", None).as_str().unwrap_or_default().to_string()
    }

    fn click(&self, css: &str) {
        let element = self.call("POST", "/element", Some(json!({ "using": "css selector", "value": css })));
        let id = element[ELEMENT_KEY].as_str().unwrap_or_else(|| panic!("no element {css}: {element}")).to_string();
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let png = decode_base64(self.call("GET", "/screenshot", None).as_str().expect("base64 PNG"));
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = http(self.address, "DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut buffer, mut bits) = (0u32, 0);
    for c in text.bytes().filter_map(value) {
        buffer = (buffer << 6) | c;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

/// Serves the dashboard over `db` on a free loopback port, in its own thread and actix System.
fn serve(db: &TestDb) -> SocketAddr {
    let store = db.store.clone();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let options = DashboardOptions::new()
                .logger(common::fixtures::logger())
                .alive_threshold(Duration::from_secs(60))
                .live(|| ProbeAnswer { ok: true, reason: "the dashboard answers".into() })
                .ready(|| ProbeAnswer { ok: true, reason: "the database answers".into() });
            let server = actix_web::HttpServer::new(move || {
                actix_web::App::new().service(dashboard::scope("", store.clone(), options.clone()))
            })
            .workers(1)
            .bind("127.0.0.1:0")
            .expect("binding the dashboard");
            sender.send(server.addrs()[0]).unwrap();
            server.run().await
        })
    });
    receiver.recv_timeout(Duration::from_secs(20)).expect("the dashboard started")
}

fn clicks_through_every_page(db: TestDb) {
    let (Some(chromedriver), Some(chromium)) =
        (tool("SOLIDQ_CHROMEDRIVER", "/usr/bin/chromedriver"), tool("SOLIDQ_CHROMIUM", "/usr/bin/chromium"))
    else {
        eprintln!("SKIPPED: chromedriver or chromium is not installed (apt install chromium chromium-driver)");
        return;
    };
    let seeded = dashboard_seed::seed(&db.store);
    dashboard_seed::showcase(&db.store, &seeded);
    let base = format!("http://{}", serve(&db));
    let browser = Browser::start(&chromedriver, &chromium);
    let backend = db.backend();
    let failed = seeded.failed[0];
    let batch = db.store.batches(1, false).expect("batches")[0].id;
    let pages = [
        ("overview", "/".to_string(), "Overview"),
        ("queues", "/queues".into(), "Queues"),
        ("processes", "/processes".into(), "Processes"),
        ("jobs-failed", "/jobs?state=failed".into(), "Jobs: failed"),
        ("jobs-ready", "/jobs?state=ready".into(), "Jobs: ready"),
        ("job", format!("/jobs/{failed}"), &format!("Job {failed}")),
        ("failed", "/failed".into(), "Failed jobs"),
        ("stuck", "/stuck".into(), "Stuck jobs"),
        ("concurrency", "/concurrency".into(), "Concurrency, rate limits and unique keys"),
        ("recurring", "/recurring".into(), "Recurring tasks"),
        ("batches", "/batches".into(), "Batches"),
        ("batch", format!("/batches/{batch}"), &format!("Batch {batch}")),
    ];
    for (name, path, title) in &pages {
        browser.open(&format!("{base}{path}"));
        assert_eq!(browser.title(), format!("{title} · solidq"), "{path}");
        let source = browser.source();
        assert!(!source.contains("<script>alert"), "{path} runs injected markup");
        let shot = browser.screenshot(&format!("{backend}-{name}"));
        eprintln!("{path}: {}", shot.display());
    }

    // Retry a failed job by its button.
    browser.open(&format!("{base}/jobs/{failed}"));
    browser.click(&format!(r#"form[action="/jobs/{failed}/retry"] button"#));
    wait_until("the job to be retried", || db.state(failed) == "ready");
    browser.wait_for_title(&format!("Job {failed}"));
    // The redirect lands on the same title: load the page again to see the new state.
    browser.open(&format!("{base}/jobs/{failed}"));
    assert!(browser.source().contains("state-ready"), "the job's page shows it ready");
    browser.screenshot(&format!("{backend}-job-retried"));

    // Pause a queue by its button.
    browser.open(&format!("{base}/queues"));
    browser.click(r#"tr[data-queue="mail"] form[action="/queues/pause"] button"#);
    wait_until("the queue to be paused", || {
        db.store.queues(dashboard_seed::now()).unwrap().iter().any(|q| q.name == "mail" && q.paused)
    });
    browser.open(&format!("{base}/queues"));
    assert!(browser.source().contains(">Resume<"), "the queues page offers to resume");
    browser.screenshot(&format!("{backend}-queues-paused"));

    // Retry every failed billing job: tick "all", confirm, done.
    browser.open(&format!("{base}/jobs?state=failed&queue=billing"));
    browser.click(r#"button[value="retry-all"]"#);
    browser.wait_for_title("Confirm");
    assert!(browser.source().contains("<b>3</b> jobs"), "the confirmation counts the jobs");
    browser.screenshot(&format!("{backend}-confirm"));
    browser.click(r#".confirm button[type="submit"]"#);
    browser.wait_for_title("Done");
    let (counts, _) = db.store.counts().unwrap();
    assert_eq!(counts.failed, 1, "only the mail job that was not retried is still failed");
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

mod clicks_through_every_page {
    macro_rules! case {
        ($backend:ident, $db:expr,) => {
            #[test]
            fn $backend() {
                let Some(db) = $db else { return };
                super::clicks_through_every_page(db);
            }
        };
    }
    super::for_each_backend!(case!());
}
