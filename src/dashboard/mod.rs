//! The web dashboard: server-rendered pages over the store, to see and act on processes,
//! queues and jobs, plus `/metrics`, `/health/live` and `/health/ready`.
//!
//! Mount it in an application's own actix-web `App` under any prefix with [`scope`], or run it
//! standalone with `solidq dashboard --bind 127.0.0.1:9292` (the `cli` feature). Every page is
//! plain HTML with one stylesheet and one small script (both embedded, served from the scope
//! under `/assets/`); a page refreshes by polling its own fragment every few seconds, which
//! the operator can pause. Charts are SVG drawn on the server.
//!
//! ```no_run
//! use actix_web::{App, HttpServer};
//! use solidq::dashboard::{self, DashboardOptions};
//!
//! # async fn serve(store: solidq::SharedStore) -> std::io::Result<()> {
//! let options = DashboardOptions::new().token("a long random secret").read_only(false);
//! HttpServer::new(move || App::new().service(dashboard::scope("/admin/jobs", store.clone(), options.clone())))
//!     .bind(("127.0.0.1", 8080))?
//!     .run()
//!     .await
//! # }
//! ```
//!
//! Safety: with a token, every request but the login form and the assets needs it (an
//! `Authorization: Bearer` header, or the HttpOnly `SameSite=Strict` cookie the login form
//! sets), compared in constant time. Actions are POSTs only, each with the session's CSRF token
//! in a hidden field and refused when `Origin` or `Sec-Fetch-Site` says cross-site. A read-only
//! dashboard shows no buttons and answers every POST with 403. Every answer carries a
//! Content-Security-Policy without inline script, `X-Frame-Options: DENY` and `nosniff`. Every
//! action logs an audit line (info level) with what it changed and the remote address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::HttpServiceFactory;
use actix_web::middleware::from_fn;
use actix_web::web;

use crate::config::{ConfigError, ConfigProblem, DEFAULT_ALIVE_THRESHOLD};
use crate::store::SharedStore;

mod actions;
mod batches;
mod chart;
pub mod html;
mod page;
mod pages;
pub mod security;

/// A claimed job running longer than this is listed on the stuck page (see
/// [`DashboardOptions::long_running`]).
pub const DEFAULT_LONG_RUNNING: Duration = Duration::from_secs(30 * 60);
/// Default address of `solidq dashboard`: loopback only.
pub const DEFAULT_BIND: &str = "127.0.0.1:9292";
/// Environment variable with the access token; needed to bind anything but loopback.
pub const TOKEN_VAR: &str = "SOLIDQ_DASHBOARD_TOKEN";
/// Environment variable that makes the dashboard read-only (`true`/`false`).
pub const READ_ONLY_VAR: &str = "SOLIDQ_DASHBOARD_READ_ONLY";
/// Jobs per page of the job lists.
pub const PAGE_SIZE: usize = 50;
/// How often a page polls its fragment.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5);

/// What a health probe answers: `ok` gives 200, otherwise 503; `reason` is the one-line body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeAnswer {
    /// Whether the probe passes.
    pub ok: bool,
    /// One line saying why (shown as the body).
    pub reason: String,
}

type Probe = Arc<dyn Fn() -> ProbeAnswer + Send + Sync>;
type MetricsText = Arc<dyn Fn() -> String + Send + Sync>;

/// How a dashboard behaves: its token, read-only mode, the alive threshold processes are
/// judged by, where its audit lines go, and the `/metrics` and `/health/*` answers (each 501
/// "not configured" until set). Cloning is cheap.
#[derive(Clone)]
pub struct DashboardOptions {
    pub(crate) token: Option<String>,
    pub(crate) read_only: bool,
    pub(crate) alive_threshold: Duration,
    pub(crate) refresh: Duration,
    pub(crate) long_running: Duration,
    pub(crate) logger: slog::Logger,
    pub(crate) metrics: Option<MetricsText>,
    pub(crate) live: Option<Probe>,
    pub(crate) ready: Option<Probe>,
}

impl Default for DashboardOptions {
    fn default() -> Self {
        DashboardOptions::new()
    }
}

impl std::fmt::Debug for DashboardOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardOptions")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("read_only", &self.read_only)
            .field("alive_threshold", &self.alive_threshold)
            .field("metrics", &self.metrics.is_some())
            .field("live", &self.live.is_some())
            .field("ready", &self.ready.is_some())
            .finish()
    }
}

impl DashboardOptions {
    /// No token, actions allowed, the default alive threshold, audit lines to the global
    /// `slog_scope` logger, no metrics or probes.
    pub fn new() -> Self {
        DashboardOptions {
            token: None,
            read_only: false,
            alive_threshold: DEFAULT_ALIVE_THRESHOLD,
            refresh: DEFAULT_REFRESH,
            long_running: DEFAULT_LONG_RUNNING,
            logger: slog_scope::logger(),
            metrics: None,
            live: None,
            ready: None,
        }
    }

    /// Reads `SOLIDQ_DASHBOARD_TOKEN` and `SOLIDQ_DASHBOARD_READ_ONLY` through `lookup` (e.g.
    /// `|name| std::env::var(name).ok()`); a malformed value is an error naming the variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut options = DashboardOptions::new();
        let mut problems = Vec::new();
        if let Some(token) = lookup(TOKEN_VAR) {
            if token.trim().is_empty() {
                problems.push(ConfigProblem {
                    variable: TOKEN_VAR,
                    value: String::new(),
                    problem: "is empty".into(),
                    expected: "unset it, or set a long random secret".into(),
                });
            } else {
                options.token = Some(token.trim().to_string());
            }
        }
        if let Some(raw) = lookup(READ_ONLY_VAR) {
            match raw.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => options.read_only = true,
                "false" | "0" | "no" => options.read_only = false,
                _ => problems.push(ConfigProblem {
                    variable: READ_ONLY_VAR,
                    value: raw.clone(),
                    problem: "is not a boolean".into(),
                    expected: "use true, false, 1, 0, yes or no".into(),
                }),
            }
        }
        if problems.is_empty() {
            Ok(options)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Every request must carry this token (a bearer header or the login cookie). Needed to
    /// serve on anything but loopback.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Whether the dashboard only shows: no buttons, every POST answered 403.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// A process whose heartbeat is older is dead (`SOLIDQ_ALIVE_THRESHOLD`); older than half
    /// of it, late.
    pub fn alive_threshold(mut self, threshold: Duration) -> Self {
        self.alive_threshold = threshold;
        self
    }

    /// How often a page polls for fresh content (default 5 s).
    pub fn refresh(mut self, every: Duration) -> Self {
        self.refresh = every;
        self
    }

    /// The stuck page lists claimed jobs running longer than this, besides those whose process
    /// is late or gone (default 30 minutes).
    pub fn long_running(mut self, limit: Duration) -> Self {
        self.long_running = limit;
        self
    }

    /// Where audit lines go (default: the `slog_scope` global logger).
    pub fn logger(mut self, logger: slog::Logger) -> Self {
        self.logger = logger;
        self
    }

    /// What `/metrics` answers: Prometheus text, computed on a blocking thread per scrape.
    pub fn metrics(mut self, scrape: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.metrics = Some(Arc::new(scrape));
        self
    }

    /// What `/health/live` answers (run on a blocking thread).
    pub fn live(mut self, probe: impl Fn() -> ProbeAnswer + Send + Sync + 'static) -> Self {
        self.live = Some(Arc::new(probe));
        self
    }

    /// What `/health/ready` answers (run on a blocking thread).
    pub fn ready(mut self, probe: impl Fn() -> ProbeAnswer + Send + Sync + 'static) -> Self {
        self.ready = Some(Arc::new(probe));
        self
    }

    /// `/metrics` from a [`crate::Exporter`] (the database-wide gauges, plus this process's
    /// series when built `with_process`), and `/health/ready` from
    /// [`crate::health::database_ready`]: what an application that mounts the dashboard
    /// usually wants.
    pub fn telemetry(self, exporter: crate::Exporter, store: SharedStore) -> Self {
        let exporter = Arc::new(exporter);
        self.metrics(move || exporter.scrape()).ready(move || {
            let health = crate::health::database_ready(&store);
            ProbeAnswer { ok: health.ok, reason: health.reason }
        })
    }

    /// Everything from a running embedded runtime: `/metrics` with the database gauges and
    /// this process's own series, `/health/live` from its actors and heartbeat,
    /// `/health/ready` from its database and process row, and its alive threshold.
    ///
    /// ```no_run
    /// # async fn demo(runtime: solidq::Runtime) -> Result<(), Box<dyn std::error::Error>> {
    /// use solidq::dashboard::{self, DashboardOptions};
    /// let store = runtime.store();
    /// let handle = runtime.start()?;
    /// let options = DashboardOptions::from_lookup(|name| std::env::var(name).ok())?.runtime(&handle);
    /// actix_web::HttpServer::new(move || {
    ///     actix_web::App::new().service(dashboard::scope("/ops/jobs", store.clone(), options.clone()))
    /// })
    /// .bind(("127.0.0.1", 8080))?
    /// .run()
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub fn runtime(self, handle: &crate::RuntimeHandle) -> Self {
        let (live, ready, exporter) = (handle.clone(), handle.clone(), Arc::new(handle.exporter()));
        self.alive_threshold(handle.alive_threshold())
            .metrics(move || exporter.scrape())
            .live(move || {
                let health = live.health_live();
                ProbeAnswer { ok: health.ok, reason: health.reason }
            })
            .ready(move || {
                let health = ready.health_ready_blocking();
                ProbeAnswer { ok: health.ok, reason: health.reason }
            })
    }

    /// Whether a token is set.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }
}

/// Serving on a non-loopback address without a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing to serve the dashboard on {address} without a token: anyone who can reach it could act on jobs; set \
     SOLIDQ_DASHBOARD_TOKEN to a long random secret, or bind a loopback address such as 127.0.0.1"
)]
pub struct BindRefused {
    /// The address asked for.
    pub address: SocketAddr,
}

/// Whether the dashboard may serve on `address` with `options`: loopback always, any other
/// address only with a token.
pub fn check_bind(address: SocketAddr, options: &DashboardOptions) -> Result<(), BindRefused> {
    if address.ip().is_loopback() || options.token.is_some() {
        Ok(())
    } else {
        Err(BindRefused { address })
    }
}

/// What the handlers share: the store, the options and the prefix links start with.
pub(crate) struct Dashboard {
    pub(crate) store: SharedStore,
    pub(crate) options: DashboardOptions,
    /// The mount's prefix without a trailing slash (`""` standalone).
    pub(crate) prefix: String,
}

/// The dashboard as an actix-web service under `prefix` (`""` or `"/"` for the root,
/// `"/admin/jobs"` …): add it with `App::service`. Every link it draws stays under the prefix.
pub fn scope(prefix: &str, store: SharedStore, options: DashboardOptions) -> impl HttpServiceFactory {
    let prefix = prefix.trim_end_matches('/').to_string();
    let prefix = if prefix.is_empty() || prefix.starts_with('/') { prefix } else { format!("/{prefix}") };
    let dashboard = web::Data::new(Dashboard { store, options, prefix: prefix.clone() });
    let scope = web::scope(&prefix).app_data(dashboard);
    actions::routes(batches::routes(pages::routes(scope))).wrap(from_fn(security::guard))
}
