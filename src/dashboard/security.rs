//! What every request passes through: the access token (a bearer header or the login cookie,
//! compared in constant time), read-only mode, the cross-site checks on POSTs, the per-session
//! CSRF token and the security headers on every answer.
//!
//! No crate for the comparison or the random tokens: the comparison is a dozen lines
//! ([`same_secret`]), and the tokens come from std's SipHash keyed by the OS's randomness
//! (`RandomState`), which an attacker cannot predict without the key.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse};

use super::Dashboard;

/// Cookie that carries the access token after a login.
pub const SESSION_COOKIE: &str = "solidq_session";
/// Cookie that carries the per-session CSRF token; every form repeats it in a hidden field.
pub const CSRF_COOKIE: &str = "solidq_csrf";
/// Name of the hidden form field with the CSRF token.
pub const CSRF_FIELD: &str = "csrf";

/// The Content-Security-Policy of every answer: only this origin's script and style, no
/// inline script, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' \
     data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Whether `given` equals `expected`, in time that depends only on their lengths.
pub fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = u8::from(given.len() != expected.len());
    // Compare against `expected` cycled, so that the loop length depends on `given` alone.
    for (i, byte) in given.iter().enumerate() {
        let other = if expected.is_empty() { 0 } else { expected[i % expected.len()] };
        difference |= byte ^ other;
    }
    difference == 0 && !expected.is_empty()
}

/// 32 hex digits no client can guess.
pub fn random_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut text = String::with_capacity(32);
    for _ in 0..2 {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher
            .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
        text.push_str(&format!("{:016x}", hasher.finish()));
    }
    text
}

/// The CSRF token of this request's session (set by the guard before any handler runs).
#[derive(Debug, Clone)]
pub struct CsrfToken(pub String);

/// How the request proved it may come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token is configured (loopback use).
    Open,
    /// `Authorization: Bearer` header: no browser sends it by itself, so no CSRF check needed.
    Bearer,
    /// The login cookie.
    Cookie,
}

/// Whether the request carries the dashboard's token; `None` if it does not.
fn access(req: &ServiceRequest, token: Option<&str>) -> Option<Access> {
    let Some(token) = token else { return Some(Access::Open) };
    if let Some(value) = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        if let Some(given) = value.strip_prefix("Bearer ") {
            if same_secret(given.trim().as_bytes(), token.as_bytes()) {
                return Some(Access::Bearer);
            }
        }
    }
    if let Some(cookie) = req.cookie(SESSION_COOKIE) {
        if same_secret(cookie.value().as_bytes(), token.as_bytes()) {
            return Some(Access::Cookie);
        }
    }
    None
}

/// Why a POST looks cross-site, if it does: `Sec-Fetch-Site` other than `same-origin` (or
/// `none`, typed by the user), or an `Origin` whose host is not this request's host.
pub fn cross_site(req: &actix_web::HttpRequest) -> Option<String> {
    if let Some(site) = req.headers().get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" && site != "none" {
            return Some(format!("Sec-Fetch-Site is {site}"));
        }
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest).trim_end_matches('/');
        if origin == "null" || origin_host != host {
            return Some(format!("Origin {origin} is not this host ({host})"));
        }
    }
    None
}

/// The middleware of the dashboard's scope: authentication, read-only mode, cross-site POSTs,
/// the CSRF cookie and the security headers.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(dashboard) = req.app_data::<web::Data<Dashboard>>().cloned() else {
        let res = next.call(req).await?;
        return Ok(res.map_into_boxed_body());
    };
    let local = req.path().strip_prefix(dashboard.prefix.as_str()).unwrap_or(req.path()).to_string();
    let public = local.starts_with("/assets/") || local == "/login";
    let is_post = req.method() == Method::POST;

    let access = access(&req, dashboard.options.token.as_deref());
    if access.is_none() && !public {
        let login = format!("{}/login", dashboard.prefix);
        let res = if req.method() == Method::GET && accepts_html(&req) {
            HttpResponse::SeeOther().insert_header((header::LOCATION, login)).finish()
        } else {
            HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"solidq dashboard\""))
                .content_type("text/plain; charset=utf-8")
                .body("this dashboard needs its token (SOLIDQ_DASHBOARD_TOKEN): send Authorization: Bearer <token> or log in\n")
        };
        return Ok(with_headers(req.into_response(res)));
    }
    if is_post {
        if dashboard.options.read_only && local != "/login" {
            let res = HttpResponse::build(StatusCode::FORBIDDEN)
                .content_type("text/plain; charset=utf-8")
                .body("the dashboard is read-only (SOLIDQ_DASHBOARD_READ_ONLY): no action is allowed\n");
            return Ok(with_headers(req.into_response(res)));
        }
        if let Some(why) = cross_site(req.request()) {
            let res = HttpResponse::build(StatusCode::FORBIDDEN)
                .content_type("text/plain; charset=utf-8")
                .body(format!("cross-site request refused: {why}\n"));
            return Ok(with_headers(req.into_response(res)));
        }
    }
    // Requests proven by a bearer header need no CSRF token: browsers never add one.
    if access == Some(Access::Bearer) {
        req.extensions_mut().insert(BearerAccess);
    }
    let existing = req.cookie(CSRF_COOKIE).map(|c| c.value().to_string()).filter(|v| v.len() >= 32);
    let (csrf, fresh) = match existing {
        Some(value) => (value, false),
        None => (random_token(), true),
    };
    req.extensions_mut().insert(CsrfToken(csrf.clone()));
    let cookie_path = if dashboard.prefix.is_empty() { "/".to_string() } else { dashboard.prefix.clone() };
    let mut res = next.call(req).await?.map_into_boxed_body();
    if fresh {
        let cookie =
            Cookie::build(CSRF_COOKIE, csrf).path(cookie_path).http_only(true).same_site(SameSite::Strict).finish();
        let _ = res.response_mut().add_cookie(&cookie);
    }
    Ok(with_headers(res))
}

/// Marks a request authenticated by its `Authorization` header.
#[derive(Debug, Clone, Copy)]
pub struct BearerAccess;

fn accepts_html(req: &ServiceRequest) -> bool {
    req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/html"))
}

fn with_headers<B>(mut res: ServiceResponse<B>) -> ServiceResponse<B> {
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    res
}

/// Whether the form's CSRF field matches the session's token (or the request came with a
/// bearer header).
pub fn csrf_ok(req: &actix_web::HttpRequest, field: Option<&str>) -> bool {
    if req.extensions().get::<BearerAccess>().is_some() {
        return true;
    }
    let Some(cookie) = req.cookie(CSRF_COOKIE) else { return false };
    let Some(field) = field else { return false };
    same_secret(field.as_bytes(), cookie.value().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"abcabc", b"abc"));
        assert!(!same_secret(b"", b""));
    }

    #[test]
    fn tokens_differ() {
        let a = random_token();
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_token());
    }
}
