//! What every page shares: the request's context (store, options, prefix, CSRF token), the
//! layout around a page's body, the fragment a page polls, and how failures become pages.

use std::fmt::Write as _;

use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use chrono::NaiveDateTime;

use super::html::{attr, esc};
use super::security::{CsrfToken, CSRF_FIELD};
use super::Dashboard;
use crate::store::{ActionError, SharedStore, StoreError};

/// The pages in the navigation, with their paths.
const NAVIGATION: [(&str, &str); 9] = [
    ("/", "Overview"),
    ("/queues", "Queues"),
    ("/processes", "Processes"),
    ("/jobs", "Jobs"),
    ("/failed", "Failed"),
    ("/stuck", "Stuck"),
    ("/concurrency", "Limits"),
    ("/recurring", "Recurring"),
    ("/batches", "Batches"),
];

/// One request's view of the dashboard.
pub(crate) struct Ctx {
    pub dashboard: web::Data<Dashboard>,
    pub csrf: String,
    /// Only the live part of the page (the poll), not the layout.
    pub fragment: bool,
    /// When the page is drawn (UTC).
    pub now: NaiveDateTime,
    /// The request path within the dashboard, for the navigation's current page.
    pub local_path: String,
    /// Remote address for audit lines.
    pub remote: String,
}

impl Ctx {
    pub fn of(req: &HttpRequest) -> Ctx {
        let dashboard = req.app_data::<web::Data<Dashboard>>().cloned().expect("the dashboard scope sets its data");
        let csrf = req.extensions().get::<CsrfToken>().map(|t| t.0.clone()).unwrap_or_default();
        let fragment = req.query_string().split('&').any(|pair| pair == "fragment=1");
        let local_path = req.path().strip_prefix(dashboard.prefix.as_str()).unwrap_or(req.path()).to_string();
        let remote = req.peer_addr().map_or_else(|| "unknown".to_string(), |a| a.to_string());
        Ctx { dashboard, csrf, fragment, now: chrono::Utc::now().naive_utc(), local_path, remote }
    }

    pub fn store(&self) -> SharedStore {
        self.dashboard.store.clone()
    }

    pub fn read_only(&self) -> bool {
        self.dashboard.options.read_only
    }

    /// A link to `path` (starting with `/`) under the mount's prefix.
    pub fn link(&self, path: &str) -> String {
        format!("{}{}", self.dashboard.prefix, path)
    }

    /// The hidden CSRF field every form carries.
    pub fn csrf_field(&self) -> String {
        format!(r#"<input type="hidden" name="{CSRF_FIELD}" value="{}">"#, attr(&self.csrf))
    }

    /// A one-button POST form to `path` with hidden `fields`; nothing in read-only mode.
    pub fn button(&self, path: &str, label: &str, class: &str, fields: &[(&str, String)]) -> String {
        if self.read_only() {
            return String::new();
        }
        let mut form =
            format!(r#"<form class="inline" method="post" action="{}">{}"#, attr(&self.link(path)), self.csrf_field());
        for (name, value) in fields {
            let _ = write!(form, r#"<input type="hidden" name="{}" value="{}">"#, attr(name), attr(value));
        }
        let _ = write!(form, r#"<button type="submit" class="{}">{}</button></form>"#, attr(class), esc(label));
        form
    }

    /// The page: the whole layout, or only `body` when the request is the poll for the
    /// fragment.
    pub fn page(&self, title: &str, body: String) -> HttpResponse {
        self.page_with_status(StatusCode::OK, title, body)
    }

    pub fn page_with_status(&self, status: StatusCode, title: &str, body: String) -> HttpResponse {
        let html = if self.fragment { body } else { self.layout(title, &body) };
        HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header(("Cache-Control", "no-store"))
            .body(html)
    }

    fn layout(&self, title: &str, body: &str) -> String {
        let mut nav = String::new();
        for (path, label) in NAVIGATION {
            let current = if path == "/" {
                self.local_path.is_empty() || self.local_path == "/"
            } else {
                self.local_path == path || self.local_path.starts_with(&format!("{path}/"))
            };
            let _ = write!(
                nav,
                r#"<a href="{}"{}>{label}</a>"#,
                attr(&self.link(path)),
                if current { r#" class="current" aria-current="page""# } else { "" }
            );
        }
        let mode = if self.read_only() { r#"<span class="badge">read-only</span>"# } else { "" };
        let every_ms = self.dashboard.options.refresh.as_millis();
        format!(
            r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · solidq</title><link rel="stylesheet" href="{css}"><script src="{js}" defer></script></head>
<body><header><a class="brand" href="{home}">solidq</a><nav>{nav}</nav>{mode}<button type="button" id="refresh-toggle" class="quiet" data-every="{every_ms}">Pause refresh</button></header>
<main><h1>{title}</h1><div id="live">{body}</div></main>
<footer>{backend} · drawn {now} · <a href="{metrics}">metrics</a> · <a href="{live}">live</a> · <a href="{ready}">ready</a></footer>
</body></html>"#,
            title = esc(title),
            css = attr(&self.link("/assets/dashboard.css")),
            js = attr(&self.link("/assets/dashboard.js")),
            home = attr(&self.link("/")),
            backend = esc(self.dashboard.store.backend()),
            now = esc(&super::html::time(self.now)),
            metrics = attr(&self.link("/metrics")),
            live = attr(&self.link("/health/live")),
            ready = attr(&self.link("/health/ready")),
        )
    }

    /// The page for a failure, with its status.
    pub fn error(&self, err: PageError) -> HttpResponse {
        let (status, title) = err.status();
        let body = format!(r#"<p class="error">{}</p>"#, esc(&err.message()));
        self.page_with_status(status, title, body)
    }

    /// `result` as a page titled `title`, or its failure's page.
    pub fn respond(&self, title: &str, result: Result<String, PageError>) -> HttpResponse {
        match result {
            Ok(body) => self.page(title, body),
            Err(err) => self.error(err),
        }
    }

    /// Logs an audit line for an action.
    pub fn audit(&self, action: &str, detail: String) {
        slog::info!(self.dashboard.options.logger, "dashboard action";
            "action" => action, "changed" => detail, "remote" => &self.remote);
    }
}

/// Why a page could not be drawn or an action not taken.
#[derive(Debug)]
pub(crate) enum PageError {
    /// 404.
    NotFound(String),
    /// 400: the request's parameters.
    BadRequest(String),
    /// 409: the action does not apply to the job's state.
    Conflict(String),
    /// 403.
    Forbidden(String),
    /// 500 or 503 (a database that went away).
    Store(StoreError),
    /// 500.
    Internal(String),
}

impl PageError {
    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            PageError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
            PageError::BadRequest(_) => (StatusCode::BAD_REQUEST, "Bad request"),
            PageError::Conflict(_) => (StatusCode::CONFLICT, "Not done"),
            PageError::Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden"),
            PageError::Store(StoreError::Connection { .. } | StoreError::DatabaseGone(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "Database unavailable")
            }
            PageError::Store(_) | PageError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "Database error"),
        }
    }

    fn message(&self) -> String {
        match self {
            PageError::NotFound(m)
            | PageError::BadRequest(m)
            | PageError::Conflict(m)
            | PageError::Forbidden(m)
            | PageError::Internal(m) => m.clone(),
            PageError::Store(err) => err.to_string(),
        }
    }
}

impl From<StoreError> for PageError {
    /// A query or name the store refuses is the request's fault: 400, with the store's words.
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::InvalidQuery(_) | StoreError::InvalidName(_) => PageError::BadRequest(err.to_string()),
            other => PageError::Store(other),
        }
    }
}

impl From<ActionError> for PageError {
    fn from(err: ActionError) -> Self {
        match err {
            ActionError::NotFound(_) => PageError::NotFound(err.to_string()),
            ActionError::WrongState { .. } | ActionError::KeptMoving(_) => PageError::Conflict(err.to_string()),
            ActionError::Store(store) => PageError::Store(store),
        }
    }
}

/// Runs blocking store work on actix-web's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, PageError> + Send + 'static,
) -> Result<T, PageError> {
    web::block(work).await.map_err(|err| PageError::Internal(format!("the blocking pool failed: {err}")))?
}
