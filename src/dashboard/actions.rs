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

use super::html::{attr, count, esc, url_value};
use super::page::{blocking, Ctx, PageError};
use super::security::{csrf_ok, same_secret, CSRF_FIELD, SESSION_COOKIE};
use crate::model::{JobId, JobState};
use crate::store::{ActionError, JobFilter, Store};

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

    fn get(&self, name: &str) -> Option<&str> {
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
fn checked(req: &HttpRequest, ctx: &Ctx, body: &[u8]) -> Result<Form, HttpResponse> {
    let form = Form::parse(body);
    if csrf_ok(req, form.get(CSRF_FIELD)) {
        Ok(form)
    } else {
        Err(ctx.error(PageError::Forbidden(
            "the form's CSRF token is missing or wrong (the page may be old, or the request came from another site): \
             reload the page and try again"
                .into(),
        )))
    }
}

fn see_other(location: String) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish()
}

fn parse_id(text: &str) -> Result<JobId, PageError> {
    text.trim().parse().map_err(|_| PageError::BadRequest(format!("{text:?} is not a job id (a whole number)")))
}

// ---------------------------------------------------------------- login

async fn login(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let form = match checked(&req, &ctx, &body) {
        Ok(form) => form,
        Err(res) => return res,
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
        Err(res) => return res,
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
        return res;
    }
    let (id, verb) = path.into_inner();
    let id = match parse_id(&id) {
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

/// Jobs read per batch when "every matching job" is collected.
const COLLECT_BATCH: usize = 500;

/// The ids of the jobs `filter` selects with an id up to `upper`, as they are now.
fn matching_ids(store: &Store, mut filter: JobFilter, upper: JobId) -> Result<Vec<JobId>, PageError> {
    filter.limit = COLLECT_BATCH;
    filter.after = None;
    let mut ids = Vec::new();
    loop {
        let rows = store.list_jobs(&filter)?;
        let full = rows.len() >= COLLECT_BATCH;
        for row in &rows {
            if row.id > upper {
                return Ok(ids);
            }
            ids.push(row.id);
        }
        match rows.last() {
            Some(last) if full => filter.after = Some(last.id),
            _ => return Ok(ids),
        }
    }
}

/// What a bulk form asks for: the verb and the job ids it touches (resolved now, before the
/// confirmation and again when confirmed).
struct Selection {
    verb: Verb,
    /// Ticked ids, or `None` for every matching job up to `upper_id`.
    ids: Option<Vec<JobId>>,
    filter: JobFilter,
    upper_id: JobId,
}

fn selection_of(form: &Form) -> Result<Selection, PageError> {
    let action = form.get("action").ok_or_else(|| PageError::BadRequest("the form names no action".into()))?;
    let (verb_text, all) = match action.strip_suffix("-all") {
        Some(verb) => (verb, true),
        None => (action, false),
    };
    let verb = Verb::parse(verb_text)
        .ok_or_else(|| PageError::BadRequest(format!("no bulk action {action:?}: use retry, discard or cancel")))?;
    let state_text = form.get("state").unwrap_or("failed");
    let state = JobState::parse(state_text)
        .ok_or_else(|| PageError::BadRequest(format!("state {state_text:?} does not exist")))?;
    let upper_id = parse_id(form.get("upper_id").unwrap_or(""))?;
    let filter = JobFilter {
        state,
        queue: form.get("queue").map(str::to_string),
        kind: form.get("kind").map(str::to_string),
        after: None,
        limit: COLLECT_BATCH,
    };
    let ids = if all {
        None
    } else {
        let mut ids = Vec::new();
        for text in form.all("id").chain(form.all("ids")).flat_map(|v| v.split(',')).filter(|v| !v.trim().is_empty()) {
            let id = parse_id(text)?;
            if id <= upper_id {
                ids.push(id);
            }
        }
        if ids.is_empty() {
            return Err(PageError::BadRequest("no job is selected: tick some jobs, or use \"all matching\"".into()));
        }
        Some(ids)
    };
    Ok(Selection { verb, ids, filter, upper_id })
}

async fn bulk(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let form = match checked(&req, &ctx, &body) {
        Ok(form) => form,
        Err(res) => return res,
    };
    let selection = match selection_of(&form) {
        Ok(selection) => selection,
        Err(err) => return ctx.error(err),
    };
    let back = {
        let f = &selection.filter;
        let mut link = format!("/jobs?state={}", f.state);
        if let Some(q) = &f.queue {
            let _ = write!(link, "&queue={}", url_value(q));
        }
        if let Some(k) = &f.kind {
            let _ = write!(link, "&kind={}", url_value(k));
        }
        ctx.link(&link)
    };
    act_on_selection(&ctx, &form, selection, "/jobs/bulk", back).await
}

async fn failure_group(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let form = match checked(&req, &ctx, &body) {
        Ok(form) => form,
        Err(res) => return res,
    };
    let selection = match selection_of(&form) {
        Ok(selection) if selection.ids.is_some() && selection.verb != Verb::Cancel => selection,
        Ok(_) => return ctx.error(PageError::BadRequest("a failure group is retried or discarded by its ids".into())),
        Err(err) => return ctx.error(err),
    };
    let back = ctx.link("/failed");
    act_on_selection(&ctx, &form, selection, "/failed/group", back).await
}

/// Asks for confirmation (saying how many jobs), or, confirmed, acts and shows what happened.
async fn act_on_selection(ctx: &Ctx, form: &Form, selection: Selection, path: &str, back: String) -> HttpResponse {
    let store = ctx.store();
    let Selection { verb, ids, filter, upper_id } = selection;
    let confirmed = form.get("confirm") == Some("yes");
    let ticked = ids.is_some();
    let result = blocking(move || {
        let ids = match ids {
            Some(ids) => ids,
            None => matching_ids(&store, filter, upper_id)?,
        };
        if !confirmed {
            return Ok((ids.len(), Vec::new(), Vec::new()));
        }
        let now = chrono::Utc::now().naive_utc();
        let mut done = Vec::new();
        let mut refused = Vec::new();
        for id in ids {
            match verb.apply(&store, id, now) {
                Ok(()) => done.push(id),
                Err(ActionError::Store(err)) => return Err(PageError::Store(err)),
                Err(err) => refused.push(err.to_string()),
            }
        }
        Ok((done.len() + refused.len(), done, refused))
    })
    .await;
    let (selected, done, refused) = match result {
        Ok(outcome) => outcome,
        Err(err) => return ctx.error(err),
    };
    if !confirmed {
        let mut body = format!(
            r#"<div class="confirm"><p>This will <b>{}</b> <b>{}</b> {} ({}, ids up to {upper_id}; jobs that arrived after the page was drawn are not touched).</p><form method="post" action="{}">{}"#,
            verb.name(),
            count(selected as i64),
            if selected == 1 { "job" } else { "jobs" },
            if ticked { "the jobs ticked" } else { "every job matching the filter" },
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
            r#"<input type="hidden" name="confirm" value="yes"><button type="submit" class="primary">Yes, {} {} {}</button> <a href="{}">No, go back</a></form></div>"#,
            verb.name(),
            count(selected as i64),
            if selected == 1 { "job" } else { "jobs" },
            attr(&back)
        );
        return ctx.page("Confirm", body);
    }
    ctx.audit(
        &format!("bulk {}", verb.name()),
        format!("{} of {selected} jobs {} (upper id {upper_id}): ids {:?}", done.len(), verb.past(), done),
    );
    let mut body = format!(
        r#"<p class="done">{} of {} {} {}.</p>"#,
        count(done.len() as i64),
        count(selected as i64),
        if selected == 1 { "job" } else { "jobs" },
        verb.past()
    );
    if !refused.is_empty() {
        body.push_str("<p>Not done:</p><ul>");
        for why in refused.iter().take(50) {
            let _ = write!(body, "<li>{}</li>", esc(why));
        }
        body.push_str("</ul>");
    }
    let _ = write!(body, r#"<p><a href="{}">Back</a></p>"#, attr(&back));
    ctx.page("Done", body)
}

// ---------------------------------------------------------------- recurring

async fn run_recurring(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let form = match checked(&req, &ctx, &body) {
        Ok(form) => form,
        Err(res) => return res,
    };
    let Some(key) = form.get("key").map(str::to_string) else {
        return ctx.error(PageError::BadRequest("the form names no recurring task".into()));
    };
    let store = ctx.store();
    let task_key = key.clone();
    let result = blocking(move || {
        let row = store
            .recurring_task_list()?
            .into_iter()
            .find(|row| row.key == task_key)
            .ok_or_else(|| PageError::NotFound(format!("recurring task {task_key:?} does not exist")))?;
        let task = row.task().map_err(|err| PageError::Conflict(err.to_string()))?;
        // The scheduler's job for a run, without the unique key or concurrency limit a kind's
        // handler derives (this process registers no handlers).
        let options = crate::EnqueueOptions::new().queue(task.queue.clone()).priority(task.priority);
        let job = crate::NewJob::from_json(&task.kind, task.arguments.clone(), options)
            .map_err(|err| PageError::Conflict(err.to_string()))?;
        let now = chrono::Utc::now().naive_utc();
        let run_at = chrono::Timelike::with_nanosecond(&now, 0).unwrap_or(now);
        let run = crate::store::DueRun { task_key: task_key.clone(), run_at, job };
        let ids = store.enqueue_recurring_runs(&[run], now)?;
        Ok(ids.into_iter().next().flatten())
    })
    .await;
    match result {
        Ok(id) => {
            ctx.audit("run recurring task now", format!("task {key:?}, job {id:?}"));
            match id {
                Some(id) => see_other(ctx.link(&format!("/jobs/{id}"))),
                None => see_other(ctx.link("/recurring")),
            }
        }
        Err(err) => ctx.error(err),
    }
}
