//! The pages (GET): overview, queues, processes, jobs and one job, failed groups, stuck jobs,
//! concurrency keys, recurring tasks; the assets; `/metrics` and the health probes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, Scope};
use chrono::{NaiveDateTime, TimeDelta};
use serde::Deserialize;

use super::html::{attr, count, esc, maybe_time, pretty_json, seconds, time, truncate, url_value};
use super::page::{blocking, Ctx, PageError};
use super::{ProbeAnswer, PAGE_SIZE};
use crate::model::{JobState, ProcessRow};
use crate::store::{JobFilter, JobRow};

const CSS: &str = include_str!("assets/dashboard.css");
const JS: &str = include_str!("assets/dashboard.js");

pub(crate) fn routes(scope: Scope) -> Scope {
    scope
        .route("", web::get().to(overview))
        .route("/", web::get().to(overview))
        .route("/queues", web::get().to(queues))
        .route("/processes", web::get().to(processes))
        .route("/jobs", web::get().to(jobs))
        .route("/jobs/{id}", web::get().to(job))
        .route("/failed", web::get().to(failed))
        .route("/stuck", web::get().to(stuck))
        .route("/concurrency", web::get().to(concurrency))
        .route("/recurring", web::get().to(recurring))
        .route("/login", web::get().to(login_form))
        .route("/metrics", web::get().to(metrics))
        .route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready))
        .route("/assets/dashboard.css", web::get().to(css))
        .route("/assets/dashboard.js", web::get().to(js))
}

fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    // Embedded in the binary: a new version ships a new binary, and `?v=` is not needed for
    // an operator's tool; a day is long enough to matter and short enough to pick up upgrades.
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Cache-Control", "public, max-age=86400, immutable"))
        .body(body)
}

async fn css() -> HttpResponse {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> HttpResponse {
    asset("text/javascript; charset=utf-8", JS)
}

/// Alive, late (heartbeat older than half the threshold) or dead (older than the threshold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    Alive,
    Late,
    Dead,
}

impl Liveness {
    pub(crate) fn of(age: TimeDelta, threshold: Duration) -> Liveness {
        let age = age.to_std().unwrap_or_default();
        if age > threshold {
            Liveness::Dead
        } else if age > threshold / 2 {
            Liveness::Late
        } else {
            Liveness::Alive
        }
    }

    fn name(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Late => "late",
            Liveness::Dead => "dead",
        }
    }
}

fn liveness_badge(liveness: Liveness) -> String {
    format!(r#"<span class="pill {0}">{0}</span>"#, liveness.name())
}

fn age_of(now: NaiveDateTime, then: NaiveDateTime) -> f64 {
    (now - then).num_milliseconds() as f64 / 1000.0
}

// ---------------------------------------------------------------- overview

async fn overview(req: HttpRequest) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let store = ctx.store();
    let now = ctx.now;
    let result = blocking(move || {
        let (totals, queue_counts) = store.counts()?;
        let processes = store.processes()?;
        let queues = store.queues(now)?;
        Ok((totals, queue_counts, processes, queues))
    })
    .await
    .map(|(totals, _queue_counts, processes, queues)| {
        let mut body = String::from(r#"<section class="cards">"#);
        let states = [
            (JobState::Ready, totals.ready),
            (JobState::Scheduled, totals.scheduled),
            (JobState::Claimed, totals.claimed),
            (JobState::Blocked, totals.blocked),
            (JobState::Failed, totals.failed),
            (JobState::Finished, totals.finished),
            (JobState::Discarded, totals.discarded),
            (JobState::Cancelled, totals.cancelled),
        ];
        for (state, n) in states {
            let _ = write!(
                body,
                r#"<a class="card state-{state}" href="{}"><span class="label">{state}</span><span class="value">{}</span></a>"#,
                attr(&ctx.link(&format!("/jobs?state={state}"))),
                count(n)
            );
        }
        body.push_str("</section>");
        let mut tally = BTreeMap::new();
        for process in &processes {
            *tally.entry(Liveness::of(now - process.last_heartbeat_at, ctx.dashboard.options.alive_threshold).name()).or_insert(0) += 1;
        }
        let _ = write!(
            body,
            r#"<section><h2>Processes</h2><p class="tally"><span class="pill alive">{} alive</span> <span class="pill late">{} late</span> <span class="pill dead">{} dead</span> · <a href="{}">details</a></p></section>"#,
            tally.get("alive").unwrap_or(&0),
            tally.get("late").unwrap_or(&0),
            tally.get("dead").unwrap_or(&0),
            attr(&ctx.link("/processes"))
        );
        body.push_str(r#"<section><h2>Oldest ready job per queue</h2>"#);
        if queues.is_empty() {
            body.push_str(r#"<p class="empty">No queue has jobs.</p>"#);
        } else {
            body.push_str(r#"<table><thead><tr><th>Queue</th><th class="num">Ready</th><th class="num">Oldest waits</th><th>Paused</th></tr></thead><tbody>"#);
            for queue in &queues {
                let _ = write!(
                    body,
                    r#"<tr><td><a href="{}">{}</a></td><td class="num">{}</td><td class="num">{}</td><td>{}</td></tr>"#,
                    attr(&ctx.link(&format!("/jobs?state=ready&queue={}", url_value(&queue.name)))),
                    esc(&queue.name),
                    count(queue.ready),
                    if queue.ready > 0 { seconds(queue.latency_seconds) } else { "–".into() },
                    if queue.paused { r#"<span class="pill late">paused</span>"# } else { "" }
                );
            }
            body.push_str("</tbody></table>");
        }
        body.push_str("</section>");
        body
    });
    ctx.respond("Overview", result)
}

// ---------------------------------------------------------------- queues

async fn queues(req: HttpRequest) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let store = ctx.store();
    let now = ctx.now;
    let result = blocking(move || {
        let queues = store.queues(now)?;
        let (_, counts) = store.counts()?;
        Ok((queues, counts))
    })
    .await
    .map(|(queues, counts)| {
        let counts: BTreeMap<String, _> = counts.into_iter().map(|c| (c.queue.clone(), c.counts)).collect();
        let mut names: Vec<&String> = queues.iter().map(|q| &q.name).chain(counts.keys()).collect();
        names.sort();
        names.dedup();
        if names.is_empty() {
            return r#"<p class="empty">No queues yet: a queue appears when a job is enqueued on it.</p>"#.to_string();
        }
        let mut body = String::from(
            r#"<table><thead><tr><th>Queue</th><th class="num">Ready</th><th class="num">Scheduled</th><th class="num">Running</th><th class="num">Blocked</th><th class="num">Failed</th><th class="num">Finished</th><th class="num">Latency</th><th>State</th><th></th></tr></thead><tbody>"#,
        );
        for name in names {
            let row = queues.iter().find(|q| &q.name == name);
            let c = counts.get(name).cloned().unwrap_or_default();
            let paused = row.is_some_and(|r| r.paused);
            let latency = row.filter(|r| r.ready > 0).map_or_else(|| "–".to_string(), |r| seconds(r.latency_seconds));
            let link = |state: &str| attr(&ctx.link(&format!("/jobs?state={state}&queue={}", url_value(name))));
            let action = if paused {
                ctx.button("/queues/resume", "Resume", "primary", &[("queue", name.clone())])
            } else {
                ctx.button("/queues/pause", "Pause", "", &[("queue", name.clone())])
            };
            let _ = write!(
                body,
                r#"<tr data-queue="{qa}"><td>{q}</td><td class="num"><a href="{}">{}</a></td><td class="num"><a href="{}">{}</a></td><td class="num"><a href="{}">{}</a></td><td class="num"><a href="{}">{}</a></td><td class="num"><a href="{}">{}</a></td><td class="num"><a href="{}">{}</a></td><td class="num">{latency}</td><td>{state}</td><td>{action}</td></tr>"#,
                link("ready"), count(c.ready),
                link("scheduled"), count(c.scheduled),
                link("claimed"), count(c.claimed),
                link("blocked"), count(c.blocked),
                link("failed"), count(c.failed),
                link("finished"), count(c.finished),
                qa = attr(name),
                q = esc(name),
                state = if paused { r#"<span class="pill late">paused</span>"# } else { r#"<span class="pill alive">running</span>"# },
            );
        }
        body.push_str("</tbody></table><p class=\"hint\">Latency: how long the oldest ready job has waited. A paused queue keeps accepting jobs; no worker claims from it.</p>");
        body
    });
    ctx.respond("Queues", result)
}

// ---------------------------------------------------------------- processes

async fn processes(req: HttpRequest) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let store = ctx.store();
    let result = blocking(move || {
        let processes = store.processes()?;
        let mut held = Vec::with_capacity(processes.len());
        for process in &processes {
            held.push(store.claims_of(process.id)?.len());
        }
        Ok((processes, held))
    })
    .await
    .map(|(processes, held)| process_table(&ctx, &processes, &held));
    ctx.respond("Processes", result)
}

fn process_table(ctx: &Ctx, processes: &[ProcessRow], held: &[usize]) -> String {
    if processes.is_empty() {
        return r#"<p class="empty">No process is registered: start a runtime (e.g. <code>cargo run --example demo</code>).</p>"#.into();
    }
    let threshold = ctx.dashboard.options.alive_threshold;
    let mut body = String::from(
        r#"<table><thead><tr><th>Id</th><th>Kind</th><th>Name</th><th>Host</th><th class="num">Pid</th><th>Heartbeat</th><th class="num">Jobs held</th><th class="num">Abandoned</th><th>Watchdog judges it</th></tr></thead><tbody>"#,
    );
    for (process, held) in processes.iter().zip(held) {
        let age = ctx.now - process.last_heartbeat_at;
        let liveness = Liveness::of(age, threshold);
        let judged_at = process.last_heartbeat_at + TimeDelta::from_std(threshold).unwrap_or(TimeDelta::MAX);
        let judged = if liveness == Liveness::Dead {
            "now: past the threshold".to_string()
        } else {
            format!("in {} (at {})", seconds(age_of(judged_at, ctx.now)), time(judged_at))
        };
        let abandoned = process.metadata.abandoned();
        let _ = write!(
            body,
            r#"<tr class="{l}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td><td>{} {} ago</td><td class="num">{}</td><td class="num">{}</td><td>{}</td></tr>"#,
            process.id,
            esc(&process.kind),
            esc(&process.name),
            esc(&process.hostname),
            process.pid,
            liveness_badge(liveness),
            seconds(age_of(ctx.now, process.last_heartbeat_at)),
            count(*held as i64),
            count(abandoned.count as i64),
            judged,
            l = liveness.name(),
        );
    }
    let _ = write!(
        body,
        r#"</tbody></table><p class="hint">Alive threshold {}: late past half of it, dead past it (the watchdog then hands its jobs back).</p>"#,
        crate::config::format_duration(threshold)
    );
    body
}

// ---------------------------------------------------------------- jobs

#[derive(Debug, Deserialize)]
pub(crate) struct JobsQuery {
    state: Option<String>,
    queue: Option<String>,
    kind: Option<String>,
    after: Option<String>,
}

fn non_empty(value: &Option<String>) -> Option<String> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)
}

/// The filter of a jobs query, checked: a state that does not exist is a 400 naming it.
pub(crate) fn filter_of(query: &JobsQuery) -> Result<JobFilter, PageError> {
    let state = match non_empty(&query.state) {
        None => JobState::Failed,
        Some(name) => JobState::parse(&name).ok_or_else(|| {
            PageError::BadRequest(format!(
                "state {:?} does not exist: use one of {}",
                name,
                JobState::ALL.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
            ))
        })?,
    };
    let after = match non_empty(&query.after) {
        None => None,
        Some(text) => Some(
            text.parse::<i64>()
                .map_err(|_| PageError::BadRequest(format!("after {text:?} is not a job id (a whole number)")))?,
        ),
    };
    Ok(JobFilter { state, queue: non_empty(&query.queue), kind: non_empty(&query.kind), after, limit: PAGE_SIZE })
}

fn jobs_link(ctx: &Ctx, filter: &JobFilter, after: Option<i64>) -> String {
    let mut link = format!("/jobs?state={}", filter.state);
    if let Some(queue) = &filter.queue {
        let _ = write!(link, "&queue={}", url_value(queue));
    }
    if let Some(kind) = &filter.kind {
        let _ = write!(link, "&kind={}", url_value(kind));
    }
    if let Some(after) = after {
        let _ = write!(link, "&after={after}");
    }
    ctx.link(&link)
}

async fn jobs(req: HttpRequest, query: web::Query<JobsQuery>) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let filter = match filter_of(&query) {
        Ok(filter) => filter,
        Err(err) => return ctx.error(err),
    };
    let store = ctx.store();
    let read = filter.clone();
    let result = blocking(move || Ok(store.list_jobs(&read)?)).await.map(|rows| jobs_body(&ctx, &filter, &rows));
    ctx.respond(&format!("Jobs: {}", filter.state), result)
}

fn jobs_body(ctx: &Ctx, filter: &JobFilter, rows: &[JobRow]) -> String {
    let mut body = String::from(r#"<nav class="tabs">"#);
    for state in JobState::ALL {
        let tab = JobFilter { state, after: None, ..filter.clone() };
        let _ = write!(
            body,
            r#"<a href="{}"{}>{state}</a>"#,
            attr(&jobs_link(ctx, &tab, None)),
            if state == filter.state { r#" class="current""# } else { "" }
        );
    }
    body.push_str("</nav>");
    let _ = write!(
        body,
        r#"<form class="filters" method="get" action="{}"><input type="hidden" name="state" value="{}"><label>Queue <input name="queue" value="{}"></label><label>Kind <input name="kind" value="{}"></label><button type="submit">Filter</button></form>"#,
        attr(&ctx.link("/jobs")),
        filter.state,
        attr(filter.queue.as_deref().unwrap_or("")),
        attr(filter.kind.as_deref().unwrap_or("")),
    );
    if rows.is_empty() {
        body.push_str(if filter.after.is_some() {
            r#"<p class="empty">No more jobs.</p>"#
        } else {
            r#"<p class="empty">No jobs in this state.</p>"#
        });
        return body;
    }
    let actions: &[(&str, &str)] = match filter.state {
        JobState::Failed => &[("retry", "Retry"), ("discard", "Discard")],
        JobState::Ready | JobState::Scheduled | JobState::Blocked => &[("discard", "Discard"), ("cancel", "Cancel")],
        JobState::Claimed => &[("cancel", "Cancel")],
        _ => &[],
    };
    let selectable = !actions.is_empty() && !ctx.read_only();
    if selectable {
        let _ = write!(
            body,
            r#"<form method="post" action="{}" id="bulk">{}"#,
            attr(&ctx.link("/jobs/bulk")),
            ctx.csrf_field()
        );
        let _ = write!(body, r#"<input type="hidden" name="state" value="{}">"#, filter.state);
        for (name, value) in [("queue", &filter.queue), ("kind", &filter.kind)] {
            if let Some(value) = value {
                let _ = write!(body, r#"<input type="hidden" name="{name}" value="{}">"#, attr(value));
            }
        }
    }
    body.push_str("<table><thead><tr>");
    if selectable {
        body.push_str(r#"<th><input type="checkbox" id="select-all" aria-label="select all on this page"></th>"#);
    }
    body.push_str(r#"<th class="num">Id</th><th>Kind</th><th>Queue</th><th>Arguments</th><th class="num">Attempts</th><th>Created</th><th>Scheduled</th><th>Last error</th></tr></thead><tbody>"#);
    for row in rows {
        body.push_str("<tr>");
        if selectable {
            let _ = write!(
                body,
                r#"<td><input type="checkbox" name="id" value="{}" aria-label="job {}"></td>"#,
                row.id, row.id
            );
        }
        let _ = write!(
            body,
            r#"<td class="num"><a href="{}">{}</a></td><td>{}</td><td>{}</td><td><code>{}</code></td><td class="num">{}/{}</td><td>{}</td><td>{}</td><td class="error-text">{}</td></tr>"#,
            attr(&ctx.link(&format!("/jobs/{}", row.id))),
            row.id,
            esc(&row.kind),
            esc(&row.queue),
            esc(&truncate(&row.arguments, 80)),
            row.attempts,
            row.max_attempts,
            time(row.created_at),
            maybe_time(row.scheduled_at),
            row.last_error.as_ref().map_or_else(String::new, |e| esc(&truncate(&e.message, 100))),
        );
    }
    body.push_str("</tbody></table>");
    let last = rows.last().map(|r| r.id).unwrap_or_default();
    if selectable {
        // The page's upper id: "every matching job" means those with an id up to it, never one
        // enqueued after the page was drawn.
        let _ = write!(
            body,
            r#"<input type="hidden" name="upper_id" value="{last}"><div class="bulk"><span>Selected jobs, or every matching job up to id {last}:</span>"#
        );
        for (action, label) in actions {
            let _ = write!(body, r#"<button type="submit" name="action" value="{action}">{label} selected</button>"#);
        }
        for (action, label) in actions {
            let _ = write!(
                body,
                r#"<button type="submit" name="action" value="{action}-all">{label} all matching</button>"#
            );
        }
        body.push_str("</div></form>");
    }
    if rows.len() >= filter.limit {
        let _ = write!(
            body,
            r#"<p class="pager"><a href="{}">Next page →</a></p>"#,
            attr(&jobs_link(ctx, filter, Some(last)))
        );
    }
    body
}

// ---------------------------------------------------------------- one job

async fn job(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let text = path.into_inner();
    let Ok(id) = text.parse::<i64>() else {
        return ctx.error(PageError::BadRequest(format!("{text:?} is not a job id (a whole number)")));
    };
    let store = ctx.store();
    let result = blocking(move || {
        let job = store.job(id)?.ok_or_else(|| PageError::NotFound(format!("job {id} does not exist")))?;
        let holder = match job.process_id {
            Some(pid) => store.processes()?.into_iter().find(|p| p.id == pid),
            None => None,
        };
        Ok((job, holder))
    })
    .await
    .map(|(job, holder)| job_body(&ctx, &job, holder.as_ref()));
    ctx.respond(&format!("Job {id}"), result)
}

fn job_body(ctx: &Ctx, job: &JobRow, holder: Option<&ProcessRow>) -> String {
    let state = job.state.map_or_else(|| "moving".to_string(), |s| s.to_string());
    let mut body = format!(
        r#"<dl class="facts"><dt>State</dt><dd><span class="pill state-{s}">{s}</span></dd><dt>Kind</dt><dd>{}</dd><dt>Queue</dt><dd>{}</dd><dt>Priority</dt><dd>{}</dd><dt>Attempts</dt><dd>{} of {}</dd>"#,
        esc(&job.kind),
        esc(&job.queue),
        job.priority,
        job.attempts,
        job.max_attempts,
        s = esc(&state),
    );
    if let Some(key) = &job.concurrency_key {
        let _ = write!(body, "<dt>Concurrency key</dt><dd>{}</dd>", esc(key));
    }
    if let Some(key) = &job.unique_key {
        let _ = write!(body, "<dt>Unique key</dt><dd>{}</dd>", esc(key));
    }
    body.push_str("</dl>");
    let mut actions = String::new();
    match job.state {
        Some(JobState::Failed) => {
            actions.push_str(&ctx.button(&format!("/jobs/{}/retry", job.id), "Retry", "primary", &[]));
            actions.push_str(&ctx.button(&format!("/jobs/{}/discard", job.id), "Discard", "danger", &[]));
        }
        Some(JobState::Ready | JobState::Scheduled | JobState::Blocked) => {
            actions.push_str(&ctx.button(&format!("/jobs/{}/discard", job.id), "Discard", "danger", &[]));
            actions.push_str(&ctx.button(&format!("/jobs/{}/cancel", job.id), "Cancel", "", &[]));
        }
        Some(JobState::Claimed) if job.cancel_requested_at.is_none() => {
            actions.push_str(&ctx.button(&format!("/jobs/{}/cancel", job.id), "Cancel", "", &[]));
        }
        _ => {}
    }
    if !actions.is_empty() {
        let _ = write!(body, r#"<div class="actions">{actions}</div>"#);
    }
    let _ = write!(body, r#"<h2>Arguments</h2><pre class="arguments">{}</pre>"#, esc(&pretty_json(&job.arguments)));
    body.push_str("<h2>Timeline</h2><ol class=\"timeline\">");
    let _ = write!(body, "<li><b>created</b> {}</li>", time(job.created_at));
    if let Some(at) = job.scheduled_at {
        let _ = write!(body, "<li><b>scheduled for</b> {}</li>", time(at));
    }
    if let Some(pid) = job.process_id {
        let who = holder.map_or_else(
            || format!("process {pid}"),
            |p| format!("process {pid} ({} on {}, pid {})", p.name, p.hostname, p.pid),
        );
        let _ = write!(body, "<li><b>claimed by</b> {}</li>", esc(&who));
    }
    if let Some(at) = job.cancel_requested_at {
        let _ = write!(body, "<li><b>cancel requested</b> {}</li>", time(at));
    }
    if let Some(at) = job.finished_at {
        let _ = write!(body, "<li><b>{}</b> {}</li>", esc(&state), time(at));
    }
    body.push_str("</ol>");
    body.push_str("<h2>Failures</h2>");
    match &job.last_error {
        None => body.push_str(r#"<p class="empty">No failure recorded.</p>"#),
        Some(error) => {
            let _ = write!(
                body,
                r#"<div class="failure"><p><span class="pill dead">{}</span> {}</p>"#,
                esc(error.kind.as_str()),
                esc(&error.message)
            );
            if let Some(cause) = &error.cause {
                let _ = write!(body, "<p>cause: {}</p>", esc(cause));
            }
            if let Some(backtrace) = &error.backtrace {
                let _ = write!(body, r#"<pre class="backtrace">{}</pre>"#, esc(backtrace));
            }
            body.push_str("</div>");
        }
    }
    body
}

// ---------------------------------------------------------------- failed groups

/// Failed jobs read at most to group them on the failed page.
const FAILED_GROUP_SCAN: usize = 5_000;

async fn failed(req: HttpRequest) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let store = ctx.store();
    let result = blocking(move || {
        let mut filter = JobFilter::new(JobState::Failed);
        filter.limit = FAILED_GROUP_SCAN;
        Ok(store.list_jobs(&filter)?)
    })
    .await
    .map(|rows| failed_body(&ctx, &rows));
    ctx.respond("Failed jobs", result)
}

/// Failed jobs of one kind with one message.
pub(crate) struct FailureGroup<'a> {
    pub kind: &'a str,
    pub message: &'a str,
    pub ids: Vec<i64>,
    pub first: NaiveDateTime,
    pub last: NaiveDateTime,
}

pub(crate) fn failure_groups(rows: &[JobRow]) -> Vec<FailureGroup<'_>> {
    let mut groups: BTreeMap<(&str, &str), FailureGroup<'_>> = BTreeMap::new();
    for row in rows {
        let message = row.last_error.as_ref().map_or("", |e| e.message.as_str());
        let at = row.finished_at.or(row.scheduled_at).unwrap_or(row.created_at);
        let group = groups.entry((row.kind.as_str(), message)).or_insert_with(|| FailureGroup {
            kind: &row.kind,
            message,
            ids: Vec::new(),
            first: at,
            last: at,
        });
        group.ids.push(row.id);
        group.first = group.first.min(at);
        group.last = group.last.max(at);
    }
    let mut groups: Vec<_> = groups.into_values().collect();
    groups.sort_by(|a, b| b.ids.len().cmp(&a.ids.len()).then(b.last.cmp(&a.last)));
    groups
}

fn failed_body(ctx: &Ctx, rows: &[JobRow]) -> String {
    if rows.is_empty() {
        return r#"<p class="empty">No failed jobs.</p>"#.into();
    }
    let groups = failure_groups(rows);
    let mut body = String::new();
    if rows.len() >= FAILED_GROUP_SCAN {
        let _ = write!(
            body,
            r#"<p class="hint">Grouped from the first {} failed jobs only.</p>"#,
            count(FAILED_GROUP_SCAN as i64)
        );
    }
    body.push_str(r#"<table><thead><tr><th>Kind</th><th>Error message</th><th class="num">Jobs</th><th>First seen</th><th>Last seen</th><th></th></tr></thead><tbody>"#);
    for group in &groups {
        let ids = group.ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let upper = group.ids.iter().max().copied().unwrap_or_default();
        let mut actions = String::new();
        for (action, label, class) in [("retry", "Retry group", "primary"), ("discard", "Discard group", "danger")] {
            actions.push_str(&ctx.button(
                "/failed/group",
                label,
                class,
                &[("action", action.into()), ("ids", ids.clone()), ("upper_id", upper.to_string())],
            ));
        }
        let _ = write!(
            body,
            r#"<tr><td><a href="{}">{}</a></td><td class="error-text">{}</td><td class="num">{}</td><td>{}</td><td>{}</td><td class="actions">{}</td></tr>"#,
            attr(&ctx.link(&format!("/jobs?state=failed&kind={}", url_value(group.kind)))),
            esc(group.kind),
            esc(&truncate(group.message, 200)),
            count(group.ids.len() as i64),
            time(group.first),
            time(group.last),
            actions,
        );
    }
    body.push_str("</tbody></table>");
    body
}

// ---------------------------------------------------------------- stuck

async fn stuck(req: HttpRequest) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let store = ctx.store();
    let now = ctx.now;
    let threshold = ctx.dashboard.options.alive_threshold;
    let result = blocking(move || {
        let processes = store.processes()?;
        let mut stuck = Vec::new();
        let claimed = store.list_jobs(&JobFilter { limit: 5_000, ..JobFilter::new(JobState::Claimed) })?;
        for job in claimed {
            let Some(pid) = job.process_id else { continue };
            let holder = processes.iter().find(|p| p.id == pid);
            let liveness = holder.map_or(Liveness::Dead, |p| Liveness::of(now - p.last_heartbeat_at, threshold));
            if liveness != Liveness::Alive {
                stuck.push((job, holder.cloned(), liveness));
            }
        }
        Ok(stuck)
    })
    .await
    .map(|stuck| {
        if stuck.is_empty() {
            return r#"<p class="empty">No stuck jobs: every claimed job's process has a fresh heartbeat.</p>"#.to_string();
        }
        let mut body = String::from(r#"<table><thead><tr><th class="num">Job</th><th>Kind</th><th>Queue</th><th>Held by</th><th>Heartbeat</th></tr></thead><tbody>"#);
        for (job, holder, liveness) in &stuck {
            let _ = write!(
                body,
                r#"<tr><td class="num"><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{} {}</td></tr>"#,
                attr(&ctx.link(&format!("/jobs/{}", job.id))),
                job.id,
                esc(&job.kind),
                esc(&job.queue),
                holder.as_ref().map_or_else(|| "a process that is gone".to_string(), |p| esc(&format!("{} ({})", p.name, p.hostname))),
                liveness_badge(*liveness),
                holder.as_ref().map_or_else(String::new, |p| format!("{} ago", seconds(age_of(now, p.last_heartbeat_at)))),
            );
        }
        body.push_str("</tbody></table>");
        body
    });
    ctx.respond("Stuck jobs", result)
}

// ---------------------------------------------------------------- concurrency

async fn concurrency(req: HttpRequest) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let store = ctx.store();
    let result = blocking(move || {
        let blocked = store.list_jobs(&JobFilter { limit: 5_000, ..JobFilter::new(JobState::Blocked) })?;
        let running = store.list_jobs(&JobFilter { limit: 5_000, ..JobFilter::new(JobState::Claimed) })?;
        Ok((blocked, running))
    })
    .await
    .map(|(blocked, running)| {
        let mut keys: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for job in &running {
            if let Some(key) = &job.concurrency_key {
                keys.entry(key).or_default().0 += 1;
            }
        }
        for job in &blocked {
            if let Some(key) = &job.concurrency_key {
                keys.entry(key).or_default().1 += 1;
            }
        }
        if keys.is_empty() {
            return r#"<p class="empty">No job runs or waits under a concurrency key.</p>"#.to_string();
        }
        let mut body = String::from(r#"<table><thead><tr><th>Key</th><th class="num">Running</th><th class="num">Blocked, waiting</th></tr></thead><tbody>"#);
        for (key, (holders, waiting)) in keys {
            let _ = write!(body, r#"<tr><td>{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#, esc(key), holders, waiting);
        }
        body.push_str("</tbody></table>");
        body
    });
    ctx.respond("Concurrency keys", result)
}

// ---------------------------------------------------------------- recurring

async fn recurring(req: HttpRequest) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let store = ctx.store();
    let result = blocking(move || Ok(store.recurring_task_list()?)).await.map(|tasks| {
        if tasks.is_empty() {
            return r#"<p class="empty">No recurring tasks (SOLIDQ_RECURRING, or <code>solidq recurring add</code>).</p>"#.to_string();
        }
        let now = chrono::DateTime::<chrono::Utc>::from_naive_utc_and_offset(ctx.now, chrono::Utc);
        let mut body = String::from(r#"<table><thead><tr><th>Key</th><th>Schedule</th><th>Time zone</th><th>Kind</th><th>Queue</th><th>Last run</th><th>Next run</th><th>Missed</th><th></th></tr></thead><tbody>"#);
        for row in &tasks {
            let task = row.task();
            let next = task.as_ref().ok().and_then(|t| t.next_run_after(now));
            // A run is missed when the schedule had a time after the last run and before now
            // that is more than a minute old.
            let missed = match (&task, row.last_run_at) {
                (Ok(task), Some(last)) => {
                    let last = chrono::DateTime::<chrono::Utc>::from_naive_utc_and_offset(last, chrono::Utc);
                    task.next_run_after(last).is_some_and(|due| due + TimeDelta::minutes(1) < now)
                }
                _ => false,
            };
            let _ = write!(
                body,
                r#"<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                esc(&row.key),
                esc(&row.schedule),
                esc(&row.time_zone),
                esc(&row.kind),
                esc(&row.queue),
                maybe_time(row.last_run_at),
                match (&task, next) {
                    (Err(err), _) => format!(r#"<span class="error-text">{}</span>"#, esc(&err.to_string())),
                    (Ok(_), Some(next)) => time(next.naive_utc()),
                    (Ok(_), None) => "never".into(),
                },
                if missed { r#"<span class="pill late">missed</span>"# } else { "" },
                ctx.button("/recurring/run", "Run now", "", &[("key", row.key.clone())]),
            );
        }
        body.push_str("</tbody></table>");
        body
    });
    ctx.respond("Recurring tasks", result)
}

// ---------------------------------------------------------------- login

async fn login_form(req: HttpRequest) -> HttpResponse {
    let ctx = Ctx::of(&req);
    ctx.page("Log in", login_body(&ctx, None))
}

pub(crate) fn login_body(ctx: &Ctx, problem: Option<&str>) -> String {
    let mut body = String::new();
    if let Some(problem) = problem {
        let _ = write!(body, r#"<p class="error">{}</p>"#, esc(problem));
    }
    let _ = write!(
        body,
        r#"<form class="login" method="post" action="{}">{}<label>Token <input type="password" name="token" autocomplete="current-password" autofocus></label><button type="submit" class="primary">Log in</button></form><p class="hint">The token is SOLIDQ_DASHBOARD_TOKEN of the server.</p>"#,
        attr(&ctx.link("/login")),
        ctx.csrf_field()
    );
    body
}

// ---------------------------------------------------------------- metrics and health

fn not_configured(what: &str) -> HttpResponse {
    HttpResponse::NotImplemented()
        .content_type("text/plain; charset=utf-8")
        .body(format!("{what} is not configured on this dashboard\n"))
}

async fn metrics(req: HttpRequest) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let Some(scrape) = ctx.dashboard.options.metrics.clone() else { return not_configured("/metrics") };
    match web::block(move || scrape()).await {
        Ok(text) => HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(text),
        Err(err) => HttpResponse::InternalServerError().body(format!("the metrics scrape failed: {err}\n")),
    }
}

async fn probe(probe: Option<super::Probe>, what: &str) -> HttpResponse {
    let Some(probe) = probe else { return not_configured(what) };
    let answer = web::block(move || probe())
        .await
        .unwrap_or_else(|err| ProbeAnswer { ok: false, reason: format!("the probe failed: {err}") });
    let status = if answer.ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    HttpResponse::build(status).content_type("text/plain; charset=utf-8").body(format!("{}\n", answer.reason))
}

async fn live(req: HttpRequest) -> HttpResponse {
    let ctx = Ctx::of(&req);
    probe(ctx.dashboard.options.live.clone(), "/health/live").await
}

async fn ready(req: HttpRequest) -> HttpResponse {
    let ctx = Ctx::of(&req);
    probe(ctx.dashboard.options.ready.clone(), "/health/ready").await
}
