//! The pages (GET): overview, queues, processes, jobs and one job, failed groups, stuck jobs,
//! concurrency keys, recurring tasks; the assets; `/metrics` and the health probes. The
//! batches pages are in `batches.rs`.

use std::fmt::Write as _;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, Scope};
use chrono::NaiveDateTime;
use serde::Deserialize;

use super::chart::{self, Minute};
use super::html::{attr, count, esc, maybe_time, pretty_json, seconds, time, truncate, url_value};
use super::page::{blocking, Ctx, PageError};
use super::{ProbeAnswer, PAGE_SIZE};
use crate::model::JobState;
use crate::store::views::{
    ConcurrencyKeyRow, FailureGroup, JobDetail, Liveness, ProcessDetail, QueueStats, RecurringRow, StuckJob,
    StuckReason, UniqueKeyRow,
};
use crate::store::{Count, JobCursor, JobPage, JobQuery, RateLimitUsage, RATE_LIMIT_KEYS_SHOWN};

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

/// Failure groups the failed page shows at most.
const FAILURE_GROUPS_SHOWN: usize = 200;
/// Stuck jobs the stuck page lists at most.
const STUCK_SHOWN: usize = 500;
/// Unique keys the concurrency page lists at most.
const UNIQUE_KEYS_SHOWN: usize = 200;
/// Recorded runs per recurring task.
const RUNS_SHOWN: usize = 5;

fn liveness_name(liveness: Liveness) -> &'static str {
    match liveness {
        Liveness::Alive => "alive",
        Liveness::Late => "late",
        Liveness::Dead => "dead",
    }
}

fn liveness_badge(liveness: Liveness) -> String {
    format!(r#"<span class="pill {0}">{0}</span>"#, liveness_name(liveness))
}

/// A count as the page prints it, saying when it is capped or an estimate.
fn shown(n: Count) -> String {
    match n {
        Count::Exact(_) => esc(&n.to_string()),
        Count::AtLeast(_) => format!(
            r#"<span class="capped" title="counting stopped at the cap to keep the page fast">{}</span> <span class="note">capped</span>"#,
            esc(&n.to_string())
        ),
        Count::Estimated(_) => format!(
            r#"<span class="estimated" title="the database's planner estimate, not a count">{}</span> <span class="note">estimate</span>"#,
            esc(&n.to_string())
        ),
    }
}

fn count_u(n: u64) -> String {
    count(i64::try_from(n).unwrap_or(i64::MAX))
}

// ---------------------------------------------------------------- overview

async fn overview(req: HttpRequest) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let store = ctx.store();
    let (now, threshold) = (ctx.now, ctx.dashboard.options.alive_threshold);
    let result = blocking(move || Ok(store.overview(now, threshold)?)).await.map(|overview| {
        let c = &overview.counts;
        let mut body = String::from(r#"<section class="cards">"#);
        let states = [
            (JobState::Ready, c.ready),
            (JobState::Scheduled, c.scheduled),
            (JobState::Claimed, c.claimed),
            (JobState::Blocked, c.blocked),
            (JobState::Waiting, c.waiting),
            (JobState::Failed, c.failed),
            (JobState::Finished, c.finished),
            (JobState::Discarded, c.discarded),
            (JobState::Cancelled, c.cancelled),
        ];
        for (state, n) in states {
            let _ = write!(
                body,
                r#"<a class="card state-{state}" href="{}"><span class="label">{}</span><span class="value">{}</span></a>"#,
                attr(&ctx.link(&format!("/jobs?state={state}"))),
                if state == JobState::Claimed { "running".to_string() } else { state.to_string() },
                shown(n)
            );
        }
        body.push_str("</section>");
        let minutes: Vec<Minute> = overview
            .per_minute
            .iter()
            .map(|m| Minute {
                label: m.minute.format("%H:%M").to_string(),
                finished: i64::try_from(m.finished).unwrap_or(i64::MAX),
                failed: i64::try_from(m.failed).unwrap_or(i64::MAX),
            })
            .collect();
        let finished: u64 = overview.per_minute.iter().map(|m| m.finished).sum();
        let failed: u64 = overview.per_minute.iter().map(|m| m.failed).sum();
        let _ = write!(
            body,
            r#"<section><h2>Last hour, per minute (UTC)</h2><p class="legend"><span class="sw finished"></span>finished {} <span class="sw failed"></span>failed attempts {}</p>{}</section>"#,
            count_u(finished),
            count_u(failed),
            chart::per_minute(&minutes)
        );
        let p = &overview.processes;
        let _ = write!(
            body,
            r#"<section><h2>Processes</h2><p class="tally"><span class="pill alive">{} alive</span> <span class="pill late">{} late</span> <span class="pill dead">{} dead</span> · <a href="{}">details</a></p>{}</section>"#,
            p.alive,
            p.late,
            p.dead,
            attr(&ctx.link("/processes")),
            leader_note(&ctx, overview.leader.as_ref())
        );
        body.push_str(r#"<section><h2>Oldest ready job per queue</h2>"#);
        if overview.oldest_ready.is_empty() {
            body.push_str(r#"<p class="empty">No job is ready: every queue is drained.</p>"#);
        } else {
            body.push_str(r#"<table><thead><tr><th>Queue</th><th class="num">Job</th><th>Ready since</th><th class="num">Waiting</th></tr></thead><tbody>"#);
            for oldest in &overview.oldest_ready {
                let _ = write!(
                    body,
                    r#"<tr><td><a href="{}">{}</a></td><td class="num"><a href="{}">{}</a></td><td>{}</td><td class="num">{}</td></tr>"#,
                    attr(&ctx.link(&format!("/jobs?state=ready&queue={}", url_value(&oldest.queue)))),
                    esc(&oldest.queue),
                    attr(&ctx.link(&format!("/jobs/{}", oldest.job_id))),
                    oldest.job_id,
                    time(oldest.ready_since),
                    seconds(oldest.age_secs),
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
    let result = blocking(move || Ok(store.queue_stats(now)?)).await.map(|queues| queues_body(&ctx, &queues));
    ctx.respond("Queues", result)
}

fn queues_body(ctx: &Ctx, queues: &[QueueStats]) -> String {
    if queues.is_empty() {
        return r#"<p class="empty">No queues yet: a queue appears when a job is enqueued on it.</p>"#.to_string();
    }
    let mut body = String::from(
        r#"<table><thead><tr><th>Queue</th><th class="num">Ready</th><th class="num">Scheduled</th><th class="num">Running</th><th class="num">Blocked</th><th class="num">Waiting</th><th class="num">Failed</th><th class="num">Latency</th><th>State</th><th></th></tr></thead><tbody>"#,
    );
    for queue in queues {
        let name = &queue.queue;
        let link = |state: &str| attr(&ctx.link(&format!("/jobs?state={state}&queue={}", url_value(name))));
        let action = if queue.paused_since.is_some() {
            ctx.button("/queues/resume", "Resume", "primary", &[("queue", name.clone())])
        } else {
            ctx.button("/queues/pause", "Pause", "", &[("queue", name.clone())])
        };
        let state = match queue.paused_since {
            Some(since) => format!(r#"<span class="pill late" title="since {}">paused</span>"#, time(since)),
            None => r#"<span class="pill alive">running</span>"#.into(),
        };
        let latency = if queue.ready.value() > 0 { seconds(queue.latency_secs) } else { "–".into() };
        let _ = write!(
            body,
            r#"<tr data-queue="{qa}"><td>{q}</td><td class="num"><a href="{}">{}</a></td><td class="num"><a href="{}">{}</a></td><td class="num"><a href="{}">{}</a></td><td class="num"><a href="{}">{}</a></td><td class="num"><a href="{}">{}</a></td><td class="num"><a href="{}">{}</a></td><td class="num">{latency}</td><td>{state}</td><td>{action}</td></tr>"#,
            link("ready"),
            shown(queue.ready),
            link("scheduled"),
            shown(queue.scheduled),
            link("claimed"),
            shown(queue.claimed),
            link("blocked"),
            shown(queue.blocked),
            link("waiting"),
            shown(queue.waiting),
            link("failed"),
            shown(queue.failed),
            qa = attr(name),
            q = esc(name),
        );
    }
    body.push_str(
        "</tbody></table><p class=\"hint\">Latency: how long the oldest ready job has waited. A paused queue keeps \
         accepting jobs; no worker claims from it.</p>",
    );
    body
}

// ---------------------------------------------------------------- processes

async fn processes(req: HttpRequest) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let store = ctx.store();
    let (now, threshold) = (ctx.now, ctx.dashboard.options.alive_threshold);
    let result = blocking(move || Ok(store.process_details(now, threshold)?))
        .await
        .map(|processes| process_table(&ctx, &processes));
    ctx.respond("Processes", result)
}

fn process_table(ctx: &Ctx, processes: &[ProcessDetail]) -> String {
    if processes.is_empty() {
        return r#"<p class="empty">No process is registered: start a runtime (e.g. <code>cargo run --example demo</code>).</p>"#.into();
    }
    let threshold = ctx.dashboard.options.alive_threshold;
    let mut body = String::from(
        r#"<table><thead><tr><th class="num">Id</th><th>Kind</th><th>Name</th><th>Host</th><th class="num">Pid</th><th>Heartbeat</th><th class="num">Jobs held</th><th>Watchdog judges it</th></tr></thead><tbody>"#,
    );
    for process in processes {
        let judged = if process.abandoned {
            "its row is gone: maintenance releases these claims".to_string()
        } else if process.liveness == Liveness::Dead {
            "now: past the threshold".to_string()
        } else {
            format!("in {} (at {})", seconds(age_of(process.judged_at, ctx.now)), time(process.judged_at))
        };
        let mut held = count_u(process.jobs_held);
        if !process.some_jobs.is_empty() {
            held.push_str(r#"<br><span class="note">"#);
            for id in &process.some_jobs {
                let _ = write!(held, r#"<a href="{}">{id}</a> "#, attr(&ctx.link(&format!("/jobs/{id}"))));
            }
            held.push_str("</span>");
        }
        let kind = match &process.leader {
            Some(leader) => format!(
                r#"{} <span class="pill alive" title="elected {} (term {}): runs the maintenance sweeps">leader</span>"#,
                esc(&process.kind),
                time(leader.elected_at),
                leader.term
            ),
            None => esc(&process.kind),
        };
        let _ = write!(
            body,
            r#"<tr class="{l}"><td class="num">{}</td><td>{kind}</td><td>{}</td><td>{}</td><td class="num">{}</td><td>{} {} ago</td><td class="num">{held}</td><td>{judged}</td></tr>"#,
            process.id,
            esc(&process.name),
            esc(&process.hostname),
            process.pid,
            liveness_badge(process.liveness),
            seconds(process.heartbeat_age_secs),
            l = liveness_name(process.liveness),
        );
    }
    let _ = write!(
        body,
        r#"</tbody></table><p class="hint">Alive threshold {}: late past half of it, dead past it (the watchdog then hands its jobs back).</p>"#,
        crate::config::format_duration(threshold)
    );
    body
}

/// Who leads (runs the maintenance sweeps) and since when, as a sentence.
fn leader_note(ctx: &Ctx, leader: Option<&crate::store::Leader>) -> String {
    match leader {
        Some(leader) => format!(
            r#"<p class="note">Leader: <b>process {}</b> since {} ({} ago), term {}. It runs the maintenance sweeps (watchdog, dispatcher, recurring scheduler, cleaner); another process takes over within seconds if it dies.</p>"#,
            leader.process,
            time(leader.elected_at),
            seconds(age_of(ctx.now, leader.elected_at)),
            leader.term
        ),
        None => r#"<p class="note">Leader: none elected yet.</p>"#.into(),
    }
}

fn age_of(now: NaiveDateTime, then: NaiveDateTime) -> f64 {
    (now - then).num_milliseconds() as f64 / 1000.0
}

// ---------------------------------------------------------------- jobs

/// The query string of `/jobs`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct JobsQuery {
    state: Option<String>,
    queue: Option<String>,
    kind: Option<String>,
    q: Option<String>,
    after: Option<String>,
    upper_id: Option<String>,
}

impl JobsQuery {
    /// The list fields of a bulk form.
    pub(crate) fn from_form(form: &super::actions::Form) -> JobsQuery {
        let field = |name: &str| form.get(name).map(str::to_string);
        JobsQuery {
            state: field("state"),
            queue: field("queue"),
            kind: field("kind"),
            q: field("q"),
            after: None,
            upper_id: field("upper_id"),
        }
    }
}

fn non_empty(value: &Option<String>) -> Option<String> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)
}

/// `state` by name; a state that does not exist is a 400 naming it and the states there are.
pub(crate) fn state_of(name: &str) -> Result<JobState, PageError> {
    JobState::parse(name).ok_or_else(|| {
        PageError::BadRequest(format!(
            "state {:?} does not exist: use one of {}",
            name,
            JobState::ALL.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// A job id from a form or URL; anything else is a 400 naming it.
pub(crate) fn job_id_of(what: &str, text: &str) -> Result<i64, PageError> {
    text.trim().parse().map_err(|_| PageError::BadRequest(format!("{what} {text:?} is not a job id (a whole number)")))
}

/// The store query of a jobs URL, checked.
pub(crate) fn query_of(params: &JobsQuery) -> Result<JobQuery, PageError> {
    let state = state_of(non_empty(&params.state).as_deref().unwrap_or("failed"))?;
    let after = match non_empty(&params.after) {
        None => None,
        Some(text) => Some(text.parse::<JobCursor>().map_err(PageError::BadRequest)?),
    };
    let upper_id = non_empty(&params.upper_id).map(|text| job_id_of("upper_id", &text)).transpose()?;
    let query = JobQuery {
        state,
        queue: non_empty(&params.queue),
        kind: non_empty(&params.kind),
        text: non_empty(&params.q),
        after,
        limit: PAGE_SIZE,
        upper_id,
    };
    match query.problem() {
        Some(problem) => Err(PageError::BadRequest(problem)),
        None => Ok(query),
    }
}

/// The URL of `query`'s list (its first page, or the page after `after`).
fn jobs_link(ctx: &Ctx, query: &JobQuery, after: Option<JobCursor>) -> String {
    let mut link = format!("/jobs?state={}", query.state);
    for (name, value) in [("queue", &query.queue), ("kind", &query.kind), ("q", &query.text)] {
        if let Some(value) = value {
            let _ = write!(link, "&{name}={}", url_value(value));
        }
    }
    if let Some(after) = after {
        let _ = write!(link, "&after={}", url_value(&after.to_string()));
        if let Some(upper) = query.upper_id {
            let _ = write!(link, "&upper_id={upper}");
        }
    }
    ctx.link(&link)
}

async fn jobs(req: HttpRequest, params: web::Query<JobsQuery>) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let query = match query_of(&params) {
        Ok(query) => query,
        Err(err) => return ctx.error(err),
    };
    let store = ctx.store();
    let read = query.clone();
    let result = blocking(move || Ok(store.page_jobs(&read)?)).await.map(|page| jobs_body(&ctx, &query, &page));
    ctx.respond(&format!("Jobs: {}", query.state), result)
}

fn jobs_body(ctx: &Ctx, query: &JobQuery, page: &JobPage) -> String {
    let mut body = String::from(r#"<nav class="tabs">"#);
    for state in JobState::ALL {
        let tab = JobQuery { state, after: None, upper_id: None, ..query.clone() };
        let _ = write!(
            body,
            r#"<a href="{}"{}>{state}</a>"#,
            attr(&jobs_link(ctx, &tab, None)),
            if state == query.state { r#" class="current""# } else { "" }
        );
    }
    body.push_str("</nav>");
    let _ = write!(
        body,
        r#"<form class="filters" method="get" action="{}"><input type="hidden" name="state" value="{}"><label>Queue <input name="queue" value="{}"></label><label>Kind <input name="kind" value="{}"></label><label>Arguments contain <input type="search" name="q" value="{}"></label><button type="submit">Filter</button></form>"#,
        attr(&ctx.link("/jobs")),
        query.state,
        attr(query.queue.as_deref().unwrap_or("")),
        attr(query.kind.as_deref().unwrap_or("")),
        attr(query.text.as_deref().unwrap_or("")),
    );
    let total = match page.total {
        Some(total) => format!("{} {} in this list", shown(total), if total.value() == 1 { "job" } else { "jobs" }),
        None => "not counted (a text filter, or a filter on ended jobs, would read too many rows)".into(),
    };
    let _ = write!(body, r#"<p class="hint">{total}; newest first, ids up to {}.</p>"#, page.upper_id);
    if page.rows.is_empty() {
        body.push_str(if page.budget_exhausted {
            r#"<p class="empty">No match among the jobs read so far; the list goes on.</p>"#
        } else if query.after.is_some() {
            r#"<p class="empty">No more jobs.</p>"#
        } else {
            r#"<p class="empty">No jobs in this state.</p>"#
        });
    } else {
        jobs_table(ctx, query, page, &mut body);
    }
    if let Some(next) = page.next {
        let next_query = JobQuery { upper_id: Some(page.upper_id), ..query.clone() };
        let _ = write!(
            body,
            r#"<p class="pager"><a href="{}">Next page →</a></p>"#,
            attr(&jobs_link(ctx, &next_query, Some(next)))
        );
    }
    body
}

fn jobs_table(ctx: &Ctx, query: &JobQuery, page: &JobPage, body: &mut String) {
    let actions: &[(&str, &str)] = match query.state {
        JobState::Failed => &[("retry", "Retry"), ("discard", "Discard")],
        JobState::Ready | JobState::Scheduled | JobState::Blocked | JobState::Waiting => {
            &[("discard", "Discard"), ("cancel", "Cancel")]
        }
        JobState::Claimed => &[("cancel", "Cancel")],
        JobState::Discarded | JobState::Cancelled => &[("retry", "Retry")],
        JobState::Finished => &[],
    };
    let selectable = !actions.is_empty() && !ctx.read_only();
    if selectable {
        let _ = write!(
            body,
            r#"<form method="post" action="{}" id="bulk">{}"#,
            attr(&ctx.link("/jobs/bulk")),
            ctx.csrf_field()
        );
        let _ = write!(body, r#"<input type="hidden" name="state" value="{}">"#, query.state);
        for (name, value) in [("queue", &query.queue), ("kind", &query.kind), ("q", &query.text)] {
            if let Some(value) = value {
                let _ = write!(body, r#"<input type="hidden" name="{name}" value="{}">"#, attr(value));
            }
        }
        // Fixed when the page was drawn: "every matching job" never reaches a later job.
        let _ = write!(body, r#"<input type="hidden" name="upper_id" value="{}">"#, page.upper_id);
    }
    body.push_str("<table><thead><tr>");
    if selectable {
        body.push_str(r#"<th><input type="checkbox" id="select-all" aria-label="select all on this page"></th>"#);
    }
    let when = if matches!(query.state, JobState::Finished | JobState::Discarded | JobState::Cancelled) {
        "Ended"
    } else {
        "Scheduled"
    };
    let _ = write!(
        body,
        r#"<th class="num">Id</th><th>Kind</th><th>Queue</th><th>Arguments</th><th class="num">Attempts</th><th>Created</th><th>{when}</th><th>Last error</th></tr></thead><tbody>"#
    );
    for row in &page.rows {
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
            maybe_time(if when == "Ended" { row.finished_at } else { row.scheduled_at }),
            row.last_error.as_ref().map_or_else(String::new, |e| esc(&truncate(&e.message, 100))),
        );
    }
    body.push_str("</tbody></table>");
    if selectable {
        let _ = write!(body, r#"<div class="bulk"><span>Ticked jobs:</span>"#);
        for (action, label) in actions {
            let _ = write!(body, r#"<button type="submit" name="action" value="{action}">{label} selected</button>"#);
        }
        let _ = write!(body, r#"<span>· every job of this list (ids up to {}):</span>"#, page.upper_id);
        for (action, label) in actions {
            let _ = write!(body, r#"<button type="submit" name="action" value="{action}-all">{label} all</button>"#);
        }
        body.push_str("</div></form>");
    }
}

// ---------------------------------------------------------------- one job

async fn job(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let id = match job_id_of("job", &path.into_inner()) {
        Ok(id) => id,
        Err(err) => return ctx.error(err),
    };
    let store = ctx.store();
    let result =
        blocking(move || store.job_detail(id)?.ok_or_else(|| PageError::NotFound(format!("job {id} does not exist"))))
            .await
            .map(|detail| job_body(&ctx, &detail));
    ctx.respond(&format!("Job {id}"), result)
}

fn job_body(ctx: &Ctx, detail: &JobDetail) -> String {
    let job = &detail.job;
    let state = job.state.map_or_else(|| "moving".to_string(), |s| s.to_string());
    let mut body = format!(
        r#"<dl class="facts"><dt>State</dt><dd><span class="pill state-{s}">{s}</span></dd><dt>Kind</dt><dd>{}</dd><dt>Queue</dt><dd><a href="{}">{}</a></dd><dt>Priority</dt><dd>{}</dd><dt>Attempts</dt><dd>{} of {}</dd>"#,
        esc(&job.kind),
        attr(&ctx.link(&format!("/jobs?state={}&queue={}", state, url_value(&job.queue)))),
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
    if let Some(limit) = &job.rate_limit {
        let _ = write!(body, "<dt>Rate limit</dt><dd>{}</dd>", esc(&limit.to_string()));
    }
    if let Some(batch) = detail.batch {
        let _ = write!(
            body,
            r#"<dt>Batch</dt><dd><a href="{}">{batch}</a></dd>"#,
            attr(&ctx.link(&format!("/batches/{batch}")))
        );
    }
    let edges = |edges: &[crate::model::Dependency]| -> String {
        edges
            .iter()
            .map(|d| {
                let anyway = match d.on_failure {
                    crate::model::OnDependencyFailure::Cancel => "",
                    crate::model::OnDependencyFailure::Run => " (even if it fails)",
                };
                format!(r#"<a href="{}">{}</a>{anyway}"#, attr(&ctx.link(&format!("/jobs/{}", d.job))), d.job)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !detail.dependencies.depends_on.is_empty() {
        let _ = write!(body, "<dt>Runs after</dt><dd>{}</dd>", edges(&detail.dependencies.depends_on));
    }
    if !detail.dependencies.dependants.is_empty() {
        let _ = write!(body, "<dt>Jobs waiting for it</dt><dd>{}</dd>", edges(&detail.dependencies.dependants));
    }
    body.push_str("</dl>");
    let mut actions = String::new();
    match job.state {
        Some(JobState::Failed) => {
            actions.push_str(&ctx.button(&format!("/jobs/{}/retry", job.id), "Retry", "primary", &[]));
            actions.push_str(&ctx.button(&format!("/jobs/{}/discard", job.id), "Discard", "danger", &[]));
        }
        Some(JobState::Ready | JobState::Scheduled | JobState::Blocked | JobState::Waiting) => {
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
    let t = &detail.timeline;
    body.push_str(r#"<h2>Timeline</h2><ol class="timeline">"#);
    let _ = write!(body, "<li><b>created</b> {}</li>", time(t.created_at));
    if let Some(at) = t.scheduled_at {
        let _ = write!(body, "<li><b>scheduled for</b> {}</li>", time(at));
    }
    if let Some(at) = t.claimed_at {
        let who = match (t.claimed_by, &t.claimed_by_name, &t.claimed_by_host) {
            (Some(id), Some(name), Some(host)) => format!("process {id} ({name} on {host})"),
            (Some(id), _, _) => format!("process {id} (no longer registered)"),
            _ => "a process".into(),
        };
        let _ = write!(body, "<li><b>claimed</b> {} by {}</li>", time(at), esc(&who));
    }
    if let Some(at) = t.cancel_requested_at {
        let _ = write!(body, "<li><b>cancel requested</b> {}</li>", time(at));
    }
    if let Some(at) = t.failed_at {
        let _ = write!(body, "<li><b>failed</b> {}</li>", time(at));
    }
    if let Some(at) = t.ended_at {
        let _ = write!(body, "<li><b>{}</b> {}</li>", esc(&state), time(at));
    }
    body.push_str("</ol>");
    let _ = write!(body, "<h2>Failures ({})</h2>", detail.failures.len());
    if detail.failures.is_empty() {
        body.push_str(r#"<p class="empty">No failed attempt recorded.</p>"#);
    }
    for failure in detail.failures.iter().rev() {
        let _ = write!(
            body,
            r#"<div class="failure"><p><b>attempt {}</b> · {} · <span class="pill dead">{}</span></p><p class="message">{}</p>"#,
            failure.attempt,
            time(failure.at),
            esc(failure.kind.as_str()),
            esc(&failure.message)
        );
        if let Some(cause) = &failure.cause {
            let _ = write!(body, "<p>cause: {}</p>", esc(cause));
        }
        if let Some(backtrace) = &failure.backtrace {
            let _ = write!(body, r#"<pre class="backtrace">{}</pre>"#, esc(backtrace));
        }
        body.push_str("</div>");
    }
    body
}

// ---------------------------------------------------------------- failed groups

async fn failed(req: HttpRequest) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let store = ctx.store();
    let result = blocking(move || Ok(store.failure_groups(FAILURE_GROUPS_SHOWN)?))
        .await
        .map(|groups| failed_body(&ctx, &groups));
    ctx.respond("Failed jobs", result)
}

fn failed_body(ctx: &Ctx, groups: &[FailureGroup]) -> String {
    if groups.is_empty() {
        return r#"<p class="empty">No failed jobs.</p>"#.into();
    }
    let mut body = String::from(
        r#"<p class="hint">Failed jobs grouped by kind and error; a group's action touches its jobs up to the newest shown here, not those that fail later.</p><table><thead><tr><th>Kind</th><th>Error</th><th class="num">Jobs</th><th>First seen</th><th>Last seen</th><th></th></tr></thead><tbody>"#,
    );
    for group in groups {
        let key = &group.key;
        let fields = |action: &str| {
            vec![
                ("action", action.to_string()),
                ("kind", key.kind.clone()),
                ("error_kind", key.error_kind.clone()),
                ("message", key.message.clone()),
                ("upper_id", group.max_job_id.to_string()),
                ("count", group.count.to_string()),
            ]
        };
        let actions = format!(
            "{}{}",
            ctx.button("/failed/group", "Retry group", "primary", &fields("retry")),
            ctx.button("/failed/group", "Discard group", "danger", &fields("discard"))
        );
        let _ = write!(
            body,
            r#"<tr><td><a href="{}">{}</a></td><td><span class="pill dead">{}</span> <span class="error-text">{}</span></td><td class="num">{}</td><td>{}</td><td>{}</td><td class="actions">{}</td></tr>"#,
            attr(&ctx.link(&format!("/jobs?state=failed&kind={}", url_value(&key.kind)))),
            esc(&key.kind),
            esc(&key.error_kind),
            esc(&truncate(&key.message, 200)),
            count_u(group.count),
            time(group.first_seen),
            time(group.last_seen),
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
    let options = &ctx.dashboard.options;
    let (now, threshold, long) = (ctx.now, options.alive_threshold, options.long_running);
    let result = blocking(move || Ok(store.stuck_jobs(now, threshold, long, STUCK_SHOWN)?))
        .await
        .map(|stuck| stuck_body(&ctx, &stuck));
    ctx.respond("Stuck jobs", result)
}

fn stuck_body(ctx: &Ctx, stuck: &[StuckJob]) -> String {
    let long = crate::config::format_duration(ctx.dashboard.options.long_running);
    if stuck.is_empty() {
        return format!(
            r#"<p class="empty">No stuck jobs: every claimed job's process has a fresh heartbeat, and none has run longer than {long}.</p>"#
        );
    }
    let mut body = String::from(
        r#"<table><thead><tr><th class="num">Job</th><th>Kind</th><th>Queue</th><th>Held by</th><th>Claimed</th><th class="num">Running</th><th>Why</th></tr></thead><tbody>"#,
    );
    for job in stuck {
        let why = match job.reason {
            StuckReason::ProcessLate => r#"<span class="pill late">process heartbeat late</span>"#.to_string(),
            StuckReason::ProcessGone => r#"<span class="pill dead">process gone</span>"#.to_string(),
            StuckReason::RunningLong => format!(r#"<span class="pill late">running over {long}</span>"#),
        };
        let _ = write!(
            body,
            r#"<tr><td class="num"><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td><td>{why}</td></tr>"#,
            attr(&ctx.link(&format!("/jobs/{}", job.job_id))),
            job.job_id,
            esc(&job.kind),
            esc(&job.queue),
            esc(&format!(
                "process {} ({})",
                job.process_id,
                job.process_name.as_deref().unwrap_or("no longer registered")
            )),
            time(job.claimed_at),
            seconds(job.running_secs),
        );
    }
    body.push_str("</tbody></table>");
    body
}

// ---------------------------------------------------------------- concurrency

async fn concurrency(req: HttpRequest) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let store = ctx.store();
    let now = ctx.now;
    let result = blocking(move || {
        Ok((store.concurrency_keys(now)?, store.rate_limit_usage(now)?, store.unique_keys(UNIQUE_KEYS_SHOWN)?))
    })
    .await
    .map(|(keys, rates, unique)| concurrency_body(&ctx, &keys, &rates, &unique));
    ctx.respond("Concurrency, rate limits and unique keys", result)
}

/// The rate-limit keys: each one's limit, how much of its window is used, and its jobs.
fn rate_limits_section(ctx: &Ctx, body: &mut String, rates: &[RateLimitUsage]) {
    body.push_str("<h2>Rate limits</h2>");
    if rates.is_empty() {
        body.push_str(r#"<p class="empty">No job has a rate limit (<code>Job::rate_limit</code> sets one).</p>"#);
        return;
    }
    body.push_str(r#"<table><thead><tr><th>Key</th><th>Limit</th><th class="num">Starts in window</th><th class="num">Ready</th><th class="num">Deferred, scheduled</th><th class="num">Running</th><th>Next due</th><th>Last start</th></tr></thead><tbody>"#);
    for key in rates {
        let (limit, full) = match &key.limit {
            Some(limit) => (
                format!("{} per {}", limit.limit(), crate::config::format_duration(limit.period())),
                key.in_window >= i64::from(limit.limit()),
            ),
            None => ("–".into(), false),
        };
        let _ = write!(
            body,
            r#"<tr{}><td>{}</td><td>{}</td><td class="num">{}</td><td class="num"><a href="{}">{}</a></td><td class="num"><a href="{}">{}</a></td><td class="num"><a href="{}">{}</a></td><td>{}</td><td>{}</td></tr>"#,
            if full && key.scheduled > 0 { r#" class="late""# } else { "" },
            esc(&key.key),
            esc(&limit),
            count_u(u64::try_from(key.in_window).unwrap_or(0)),
            attr(&ctx.link("/jobs?state=ready")),
            count_u(u64::try_from(key.ready).unwrap_or(0)),
            attr(&ctx.link("/jobs?state=scheduled")),
            count_u(u64::try_from(key.scheduled).unwrap_or(0)),
            attr(&ctx.link("/jobs?state=claimed")),
            count_u(u64::try_from(key.running).unwrap_or(0)),
            maybe_time(key.next_due),
            maybe_time(key.last_start),
        );
    }
    body.push_str("</tbody></table><p class=\"hint\">Starts in window: starts counted in the last period plus its guard (a twentieth, at most 50 ms); a full window defers the key's next jobs as scheduled to the time a place frees. Highlighted: the window is full and jobs wait.</p>");
    if rates.len() >= RATE_LIMIT_KEYS_SHOWN {
        let _ = write!(body, r#"<p class="hint">The first {RATE_LIMIT_KEYS_SHOWN} keys only.</p>"#);
    }
}

fn concurrency_body(
    ctx: &Ctx,
    keys: &[ConcurrencyKeyRow],
    rates: &[RateLimitUsage],
    unique: &[UniqueKeyRow],
) -> String {
    let mut body = String::from("<h2>Concurrency keys</h2>");
    if keys.is_empty() {
        body.push_str(r#"<p class="empty">No job runs or waits under a concurrency key.</p>"#);
    } else {
        body.push_str(r#"<table><thead><tr><th>Key</th><th class="num">Limit</th><th class="num">Holders</th><th class="num">Expired holders</th><th class="num">Blocked, waiting</th></tr></thead><tbody>"#);
        for key in keys {
            let full = key.limit > 0 && key.holders >= u64::try_from(key.limit).unwrap_or(0);
            let _ = write!(
                body,
                r#"<tr{}><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num"><a href="{}">{}</a></td></tr>"#,
                if full && key.blocked > 0 { r#" class="late""# } else { "" },
                esc(&key.key),
                key.limit,
                count_u(key.holders),
                count_u(key.expired_holders),
                attr(&ctx.link("/jobs?state=blocked")),
                count_u(key.blocked),
            );
        }
        body.push_str("</tbody></table><p class=\"hint\">Holders: ready jobs and jobs running within the key's duration. Expired holders still run but no longer count against the limit.</p>");
    }
    rate_limits_section(ctx, &mut body, rates);
    body.push_str("<h2>Unique keys held</h2>");
    if unique.is_empty() {
        body.push_str(r#"<p class="empty">No job holds a unique key.</p>"#);
    } else {
        body.push_str(r#"<table><thead><tr><th>Key</th><th class="num">Job</th><th>Kind</th><th>Queue</th><th>State</th></tr></thead><tbody>"#);
        for row in unique {
            let _ = write!(
                body,
                r#"<tr><td>{}</td><td class="num"><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                esc(&row.key),
                attr(&ctx.link(&format!("/jobs/{}", row.job_id))),
                row.job_id,
                esc(&row.kind),
                esc(&row.queue),
                row.state.map_or_else(|| "–".to_string(), |s| s.to_string()),
            );
        }
        body.push_str("</tbody></table>");
        if unique.len() >= UNIQUE_KEYS_SHOWN {
            let _ = write!(body, r#"<p class="hint">The first {UNIQUE_KEYS_SHOWN} only.</p>"#);
        }
    }
    body
}

// ---------------------------------------------------------------- recurring

async fn recurring(req: HttpRequest) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let store = ctx.store();
    let now = ctx.now;
    let result = blocking(move || Ok(store.recurring_overview(now, RUNS_SHOWN)?))
        .await
        .map(|tasks| recurring_body(&ctx, &tasks));
    ctx.respond("Recurring tasks", result)
}

fn recurring_body(ctx: &Ctx, tasks: &[RecurringRow]) -> String {
    if tasks.is_empty() {
        return r#"<p class="empty">No recurring tasks (SOLIDQ_RECURRING, or <code>solidq recurring add</code>).</p>"#
            .to_string();
    }
    let mut body = String::from(
        r#"<table><thead><tr><th>Key</th><th>Schedule</th><th>Time zone</th><th>Job</th><th>Next run</th><th>Last runs</th><th>Missed</th><th></th></tr></thead><tbody>"#,
    );
    for row in tasks {
        let task = &row.task;
        let next = match (&row.problem, row.next_run_at) {
            (Some(problem), _) => format!(r#"<span class="error-text">{}</span>"#, esc(problem)),
            (None, Some(next)) => time(next),
            (None, None) => "never".into(),
        };
        let mut runs = String::new();
        for run in &row.last_runs {
            let state = run.state.map_or_else(|| "cleared".to_string(), |s| s.to_string());
            match run.job_id {
                Some(id) => {
                    let _ = write!(
                        runs,
                        r#"<div>{} · <a href="{}">job {id}</a> <span class="pill state-{s}">{s}</span></div>"#,
                        time(run.run_at),
                        attr(&ctx.link(&format!("/jobs/{id}"))),
                        s = esc(&state)
                    );
                }
                None => {
                    let _ = write!(runs, "<div>{} · no job</div>", time(run.run_at));
                }
            }
        }
        if runs.is_empty() {
            runs.push('–');
        }
        let missed = if row.missed.is_empty() {
            String::new()
        } else {
            format!(
                r#"<span class="pill late" title="{}">{} missed</span>"#,
                attr(&row.missed.iter().map(|at| time(*at)).collect::<Vec<_>>().join(", ")),
                row.missed.len()
            )
        };
        let _ = write!(
            body,
            r#"<tr><td>{}{}</td><td><code>{}</code></td><td>{}</td><td>{} <span class="note">on {}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&task.key),
            if task.is_static { r#" <span class="note">static</span>"# } else { "" },
            esc(&task.schedule),
            esc(&task.time_zone),
            esc(&task.kind),
            esc(&task.queue),
            next,
            runs,
            missed,
            ctx.button("/recurring/run", "Run now", "", &[("key", task.key.clone())]),
        );
    }
    body.push_str("</tbody></table>");
    body
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
        Ok(text) => HttpResponse::Ok().content_type(crate::metrics::text::CONTENT_TYPE).body(text),
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
