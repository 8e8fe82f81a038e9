//! The actions (POST only): log in, pause and resume a queue, retry / discard / cancel one
//! job, a selection of jobs or a failure group, run a recurring task now. Every action checks
//! the session's CSRF token (the guard already refused read-only mode and cross-site
//! requests), and logs an audit line with what it changed.
//!
//! A bulk action acts on the set the page showed: the ids ticked, or "every matching job" as
//! the filter plus the page's upper id, so that jobs enqueued after the page was drawn are
//! never touched. It first answers with a confirmation that says how many jobs it will touch.

use std::fmt::Write as _;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, Scope};

use super::html::{attr, count, esc, truncate, url_value};
use super::page::{blocking, Ctx, PageError};
use super::pages::{job_id_of, query_of, JobsQuery};
use super::security::{csrf_ok, same_secret, CSRF_FIELD, SESSION_COOKIE};
use crate::model::JobId;
use crate::store::views::FailureGroupKey;
use crate::store::{ActionError, ActionOutcome, JobSelection, Store};

pub(crate) fn routes(scope: Scope) -> Scope {
    scope
        .route("/login", web::post().to(login))
        .route("/queues/{verb}", web::post().to(queue_action))
        .route("/jobs/bulk", web::post().to(bulk))
        .route("/jobs/{id}/{verb}", web::post().to(job_action))
        .route("/failed/group", web::post().to(failure_group))
        .route("/recurring/run", web::post().to(run_recurring))
}

/// A form body's fields, in order; repeated names (`id=1&id=2`) kept.
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub(crate) fn parse(body: &[u8]) -> Form {
        let text = String::from_utf8_lossy(body);
        Form(
            text.split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (decode(name), decode(value))
                })
                .collect(),
        )
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The form, once its CSRF field is checked.
fn checked(req: &HttpRequest, ctx: &Ctx, body: &[u8]) -> Result<Form, Box<HttpResponse>> {
    let form = Form::parse(body);
    if csrf_ok(req, form.get(CSRF_FIELD)) {
        Ok(form)
    } else {
        Err(Box::new(ctx.error(PageError::Forbidden(
            "the form's CSRF token is missing or wrong (the page may be old, or the request came from another site): \
             reload the page and try again"
                .into(),
        ))))
    }
}

fn see_other(location: String) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish()
}

// ---------------------------------------------------------------- login

async fn login(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let form = match checked(&req, &ctx, &body) {
        Ok(form) => form,
        Err(res) => return *res,
    };
    let Some(expected) = ctx.dashboard.options.token.clone() else { return see_other(ctx.link("/")) };
    let given = form.get("token").unwrap_or("").trim().to_string();
    if !same_secret(given.as_bytes(), expected.as_bytes()) {
        ctx.audit("login refused", "wrong token".into());
        let body = super::pages::login_body(&ctx, Some("That token is not this dashboard's token."));
        return ctx.page_with_status(actix_web::http::StatusCode::UNAUTHORIZED, "Log in", body);
    }
    let path = if ctx.dashboard.prefix.is_empty() { "/".to_string() } else { ctx.dashboard.prefix.clone() };
    let cookie =
        Cookie::build(SESSION_COOKIE, expected).path(path).http_only(true).same_site(SameSite::Strict).finish();
    ctx.audit("login", "session started".into());
    let mut res = see_other(ctx.link("/"));
    let _ = res.add_cookie(&cookie);
    res
}

// ---------------------------------------------------------------- queues

async fn queue_action(req: HttpRequest, verb: web::Path<String>, body: web::Bytes) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let form = match checked(&req, &ctx, &body) {
        Ok(form) => form,
        Err(res) => return *res,
    };
    let verb = verb.into_inner();
    let Some(queue) = form.get("queue").map(str::to_string) else {
        return ctx.error(PageError::BadRequest("the form names no queue".into()));
    };
    let store = ctx.store();
    let now = ctx.now;
    let name = queue.clone();
    let result = match verb.as_str() {
        "pause" => blocking(move || Ok(store.pause_queue(&name, now)?)).await,
        "resume" => blocking(move || Ok(store.resume_queue(&name)?)).await,
        other => {
            return ctx.error(PageError::NotFound(format!("queues have no action {other:?}: use pause or resume")))
        }
    };
    match result {
        Ok(changed) => {
            ctx.audit(
                &format!("{verb} queue"),
                format!("queue {queue:?}{}", if changed { "" } else { " (no change)" }),
            );
            see_other(ctx.link("/queues"))
        }
        Err(err) => ctx.error(err),
    }
}

// ---------------------------------------------------------------- one job

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verb {
    Retry,
    Discard,
    Cancel,
}

impl Verb {
    fn parse(text: &str) -> Option<Verb> {
        match text {
            "retry" => Some(Verb::Retry),
            "discard" => Some(Verb::Discard),
            "cancel" => Some(Verb::Cancel),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Verb::Retry => "retry",
            Verb::Discard => "discard",
            Verb::Cancel => "cancel",
        }
    }

    fn past(self) -> &'static str {
        match self {
            Verb::Retry => "retried",
            Verb::Discard => "discarded",
            Verb::Cancel => "cancelled",
        }
    }

    fn apply(self, store: &Store, id: JobId, now: chrono::NaiveDateTime) -> Result<(), ActionError> {
        match self {
            Verb::Retry => store.retry_job(id, now),
            Verb::Discard => store.discard_job(id, now),
            Verb::Cancel => store.cancel_job(id, now).map(|_| ()),
        }
    }
}

async fn job_action(req: HttpRequest, path: web::Path<(String, String)>, body: web::Bytes) -> HttpResponse {
    let ctx = Ctx::of(&req);
    if let Err(res) = checked(&req, &ctx, &body) {
        return *res;
    }
    let (id, verb) = path.into_inner();
    let id = match job_id_of("job", &id) {
        Ok(id) => id,
        Err(err) => return ctx.error(err),
    };
    let Some(verb) = Verb::parse(&verb) else {
        return ctx.error(PageError::NotFound(format!("jobs have no action {verb:?}: use retry, discard or cancel")));
    };
    let store = ctx.store();
    let now = ctx.now;
    match blocking(move || Ok(verb.apply(&store, id, now)?)).await {
        Ok(()) => {
            ctx.audit(verb.name(), format!("job {id}"));
            see_other(ctx.link(&format!("/jobs/{id}")))
        }
        Err(err) => ctx.error(err),
    }
}

// ---------------------------------------------------------------- bulk

/// What a bulk form asks for.
struct Bulk {
    verb: Verb,
    selection: JobSelection,
    /// How the confirmation describes the set.
    described: String,
    /// Where "back" goes.
    back: String,
}

fn bulk_of(ctx: &Ctx, form: &Form) -> Result<Bulk, PageError> {
    let action = form.get("action").ok_or_else(|| PageError::BadRequest("the form names no action".into()))?;
    let (verb_text, all) = match action.strip_suffix("-all") {
        Some(verb) => (verb, true),
        None => (action, false),
    };
    let verb = Verb::parse(verb_text)
        .ok_or_else(|| PageError::BadRequest(format!("no bulk action {action:?}: use retry, discard or cancel")))?;
    let upper_id = job_id_of("upper_id", form.get("upper_id").unwrap_or(""))?;
    let params = JobsQuery::from_form(form);
    let query = query_of(&params)?;
    let back = {
        let mut link = format!("/jobs?state={}", query.state);
        for (name, value) in [("queue", &query.queue), ("kind", &query.kind), ("q", &query.text)] {
            if let Some(value) = value {
                let _ = write!(link, "&{name}={}", url_value(value));
            }
        }
        ctx.link(&link)
    };
    if all {
        let described = format!("every {} job of the list with an id up to {upper_id}", query.state);
        return Ok(Bulk { verb, selection: JobSelection::Query { query, upper_id }, described, back });
    }
    let mut ids = Vec::new();
    for text in form.all("id") {
        let id = job_id_of("id", text)?;
        // Never a job newer than the page.
        if id <= upper_id {
            ids.push(id);
        }
    }
    if ids.is_empty() {
        return Err(PageError::BadRequest("no job is selected: tick some jobs, or use an \"all\" button".into()));
    }
    let described = "the jobs ticked".to_string();
    Ok(Bulk { verb, selection: JobSelection::Ids(ids), described, back })
}

async fn bulk(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let form = match checked(&req, &ctx, &body) {
        Ok(form) => form,
        Err(res) => return *res,
    };
    let bulk = match bulk_of(&ctx, &form) {
        Ok(bulk) => bulk,
        Err(err) => return ctx.error(err),
    };
    let Bulk { verb, selection, described, back } = bulk;
    let store = ctx.store();
    if form.get("confirm") != Some("yes") {
        return match blocking(move || Ok(store.count_selection(&selection)?)).await {
            Ok(n) => confirmation(&ctx, &form, verb, n, &described, "/jobs/bulk", &back),
            Err(err) => ctx.error(err),
        };
    }
    let now = ctx.now;
    let result = blocking(move || {
        Ok(match verb {
            Verb::Retry => store.retry_selection(&selection, now)?,
            Verb::Discard => store.discard_selection(&selection, now)?,
            Verb::Cancel => store.cancel_selection(&selection, now)?,
        })
    })
    .await;
    match result {
        Ok(outcome) => done(&ctx, &format!("bulk {}", verb.name()), verb, &described, &outcome, &back),
        Err(err) => ctx.error(err),
    }
}

async fn failure_group(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let form = match checked(&req, &ctx, &body) {
        Ok(form) => form,
        Err(res) => return *res,
    };
    let verb = match form.get("action").and_then(Verb::parse) {
        Some(verb @ (Verb::Retry | Verb::Discard)) => verb,
        _ => {
            return ctx.error(PageError::BadRequest(
                "a failure group is retried or discarded: action=retry or discard".into(),
            ))
        }
    };
    let (Some(kind), Some(error_kind)) = (form.get("kind"), form.get("error_kind")) else {
        return ctx.error(PageError::BadRequest("the form names no failure group (kind, error_kind, message)".into()));
    };
    let key = FailureGroupKey {
        kind: kind.to_string(),
        error_kind: error_kind.to_string(),
        message: form.0.iter().find(|(n, _)| n == "message").map(|(_, v)| v.clone()).unwrap_or_default(),
    };
    let upper_id = match job_id_of("upper_id", form.get("upper_id").unwrap_or("")) {
        Ok(id) => id,
        Err(err) => return ctx.error(err),
    };
    let described = format!(
        "the failed {} jobs with {} {:?}, ids up to {upper_id}",
        key.kind,
        key.error_kind,
        truncate(&key.message, 120)
    );
    let back = ctx.link("/failed");
    let store = ctx.store();
    if form.get("confirm") != Some("yes") {
        // The group's size as its row showed it: the jobs up to the upper id, which is what
        // the action touches (less any that left the group meanwhile).
        let Some(n) = form.get("count").and_then(|n| n.parse::<u64>().ok()) else {
            return ctx
                .error(PageError::BadRequest("the form does not say how many jobs the group has (count)".into()));
        };
        return confirmation(&ctx, &form, verb, n, &described, "/failed/group", &back);
    }
    let now = ctx.now;
    let action_key = key.clone();
    let result = blocking(move || {
        Ok(match verb {
            Verb::Retry => store.retry_failure_group(&action_key, upper_id, now)?,
            _ => store.discard_failure_group(&action_key, upper_id, now)?,
        })
    })
    .await;
    match result {
        Ok(outcome) => done(&ctx, &format!("{} failure group", verb.name()), verb, &described, &outcome, &back),
        Err(err) => ctx.error(err),
    }
}

/// The confirmation page: how many jobs the action will touch, and the same form again with
/// `confirm=yes`.
fn confirmation(ctx: &Ctx, form: &Form, verb: Verb, n: u64, described: &str, path: &str, back: &str) -> HttpResponse {
    let jobs = if n == 1 { "job" } else { "jobs" };
    let mut body = format!(
        r#"<div class="confirm"><p>This will <b>{}</b> <b>{}</b> {jobs}: {}. Jobs that arrived after the page was drawn are not touched.</p><form method="post" action="{}">{}"#,
        verb.name(),
        count(i64::try_from(n).unwrap_or(i64::MAX)),
        esc(described),
        attr(&ctx.link(path)),
        ctx.csrf_field()
    );
    for (name, value) in &form.0 {
        if name != CSRF_FIELD && name != "confirm" {
            let _ = write!(body, r#"<input type="hidden" name="{}" value="{}">"#, attr(name), attr(value));
        }
    }
    let _ = write!(
        body,
        r#"<input type="hidden" name="confirm" value="yes"><button type="submit" class="primary">Yes, {} {} {jobs}</button> <a href="{}">No, go back</a></form></div>"#,
        verb.name(),
        count(i64::try_from(n).unwrap_or(i64::MAX)),
        attr(back)
    );
    ctx.page("Confirm", body)
}

/// The page after a bulk action, and its audit line.
fn done(ctx: &Ctx, action: &str, verb: Verb, described: &str, outcome: &ActionOutcome, back: &str) -> HttpResponse {
    ctx.audit(
        action,
        format!(
            "{} jobs {}, {} skipped ({described}): ids {:?}",
            outcome.changed.len(),
            verb.past(),
            outcome.skipped,
            outcome.changed
        ),
    );
    let n = outcome.changed.len();
    let mut body = format!(
        r#"<p class="done">{} {} {}.</p>"#,
        count(i64::try_from(n).unwrap_or(i64::MAX)),
        if n == 1 { "job" } else { "jobs" },
        verb.past()
    );
    if outcome.skipped > 0 {
        let _ = write!(
            body,
            r#"<p class="hint">{} left alone: in a state the action does not apply to, gone, or moved while it ran.</p>"#,
            outcome.skipped
        );
    }
    let _ = write!(body, r#"<p><a href="{}">Back</a></p>"#, attr(back));
    ctx.page("Done", body)
}

// ---------------------------------------------------------------- recurring

async fn run_recurring(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let form = match checked(&req, &ctx, &body) {
        Ok(form) => form,
        Err(res) => return *res,
    };
    let Some(key) = form.get("key").map(str::to_string) else {
        return ctx.error(PageError::BadRequest("the form names no recurring task".into()));
    };
    let store = ctx.store();
    let (task_key, now) = (key.clone(), ctx.now);
    match blocking(move || Ok(store.run_recurring_now(&task_key, now)?)).await {
        Ok(id) => {
            ctx.audit("run recurring task now", format!("task {key:?}, job {id}"));
            see_other(ctx.link(&format!("/jobs/{id}")))
        }
        Err(err) => ctx.error(err),
    }
}
