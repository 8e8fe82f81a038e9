//! The batches pages (GET): the newest batches with their counts, and one batch with its
//! callbacks and members.

use std::fmt::Write as _;

use actix_web::{web, HttpRequest, HttpResponse, Scope};
use serde::Deserialize;

use super::html::{attr, count, esc, maybe_time, time};
use super::page::{blocking, Ctx, PageError};
use super::pages::job_id_of;
use crate::store::composition::{BatchInfo, CallbackKind};
use crate::store::JobRow;

/// Batches the list shows at most.
const BATCHES_SHOWN: i64 = 200;
/// Members a batch's page lists at most.
const MEMBERS_SHOWN: usize = 500;

pub(crate) fn routes(scope: Scope) -> Scope {
    scope.route("/batches", web::get().to(batches)).route("/batches/{id}", web::get().to(batch))
}

#[derive(Deserialize)]
pub(crate) struct BatchesQuery {
    /// `1`: only batches whose members have not all ended.
    open: Option<String>,
}

fn outcome(info: &BatchInfo) -> (&'static str, &'static str) {
    match (info.finished_at, info.failed) {
        (None, _) => ("open", "state-ready"),
        (Some(_), 0) => ("succeeded", "state-finished"),
        (Some(_), _) => ("failed", "state-failed"),
    }
}

fn when(kind: CallbackKind) -> &'static str {
    match kind {
        CallbackKind::Success => "on success",
        CallbackKind::Finish => "on finish",
        CallbackKind::Failure => "on failure",
    }
}

/// The callbacks as "on success: kind → job 12", with a link once the job exists.
fn callbacks(ctx: &Ctx, info: &BatchInfo) -> String {
    if info.callbacks.is_empty() {
        return "–".into();
    }
    info.callbacks
        .iter()
        .map(|callback| {
            let ran = match callback.job {
                Some(job) => format!(r#" → <a href="{}">job {job}</a>"#, attr(&ctx.link(&format!("/jobs/{job}")))),
                None if info.finished_at.is_some() => r#" <span class="note">(not for this outcome)</span>"#.into(),
                None => r#" <span class="note">(not yet)</span>"#.into(),
            };
            format!("<div>{}: {}{ran}</div>", when(callback.when), esc(&callback.kind))
        })
        .collect()
}

async fn batches(req: HttpRequest, params: web::Query<BatchesQuery>) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let open_only = params.open.as_deref() == Some("1");
    let store = ctx.store();
    let result = blocking(move || Ok(store.batches(BATCHES_SHOWN, open_only)?))
        .await
        .map(|batches| batches_body(&ctx, &batches, open_only));
    ctx.respond("Batches", result)
}

fn batches_body(ctx: &Ctx, batches: &[BatchInfo], open_only: bool) -> String {
    let mut body = format!(
        r#"<p class="filters"><a href="{}"{}>All</a> · <a href="{}"{}>Open only</a></p>"#,
        attr(&ctx.link("/batches")),
        if open_only { "" } else { r#" class="current""# },
        attr(&ctx.link("/batches?open=1")),
        if open_only { r#" class="current""# } else { "" },
    );
    if batches.is_empty() {
        body.push_str(if open_only {
            r#"<p class="empty">No batch is open.</p>"#
        } else {
            r#"<p class="empty">No batches (<code>queue.batch()</code> makes one).</p>"#
        });
        return body;
    }
    body.push_str(r#"<table><thead><tr><th class="num">Batch</th><th>Description</th><th>State</th><th class="num">Size</th><th class="num">Pending</th><th class="num">Finished</th><th class="num">Failed</th><th>Callbacks</th><th>Created</th><th>Ended</th></tr></thead><tbody>"#);
    for info in batches {
        let (state, class) = outcome(info);
        let _ = write!(
            body,
            r#"<tr><td class="num"><a href="{}">{}</a></td><td>{}</td><td><span class="pill {class}">{state}</span></td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            attr(&ctx.link(&format!("/batches/{}", info.id))),
            info.id,
            esc(info.description.as_deref().unwrap_or("–")),
            count(info.size),
            count(info.pending),
            count(info.succeeded),
            count(info.failed),
            callbacks(ctx, info),
            time(info.created_at),
            maybe_time(info.finished_at),
        );
    }
    body.push_str("</tbody></table>");
    if batches.len() >= BATCHES_SHOWN as usize {
        let _ = write!(
            body,
            r#"<p class="hint">The newest {BATCHES_SHOWN} only (<code>solidq batches list --limit N</code> shows more).</p>"#
        );
    }
    body
}

async fn batch(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let id = match job_id_of("batch", &path.into_inner()) {
        Ok(id) => id,
        Err(err) => return ctx.error(err),
    };
    let store = ctx.store();
    let result = blocking(move || {
        let info = store.batch(id)?.ok_or_else(|| PageError::NotFound(format!("batch {id} does not exist")))?;
        let members = store.batch_members(id, MEMBERS_SHOWN)?;
        Ok((info, members))
    })
    .await
    .map(|(info, members)| batch_body(&ctx, &info, &members));
    ctx.respond(&format!("Batch {id}"), result)
}

fn batch_body(ctx: &Ctx, info: &BatchInfo, members: &[JobRow]) -> String {
    let (state, class) = outcome(info);
    let mut body = format!(
        r#"<dl class="facts"><dt>State</dt><dd><span class="pill {class}">{state}</span></dd><dt>Description</dt><dd>{}</dd><dt>Size</dt><dd>{}</dd><dt>Pending</dt><dd>{}</dd><dt>Finished</dt><dd>{}</dd><dt>Failed</dt><dd>{}</dd><dt>Callbacks</dt><dd>{}</dd><dt>Created</dt><dd>{}</dd><dt>Ended</dt><dd>{}</dd></dl>"#,
        esc(info.description.as_deref().unwrap_or("–")),
        count(info.size),
        count(info.pending),
        count(info.succeeded),
        count(info.failed),
        callbacks(ctx, info),
        time(info.created_at),
        maybe_time(info.finished_at),
    );
    let _ = write!(body, "<h2>Jobs ({})</h2>", count(info.size));
    if members.is_empty() {
        body.push_str(r#"<p class="empty">No jobs left (the cleaner deletes old ended jobs).</p>"#);
        return body;
    }
    body.push_str(r#"<table><thead><tr><th class="num">Job</th><th>Kind</th><th>Queue</th><th>State</th><th class="num">Attempts</th><th>Ended</th></tr></thead><tbody>"#);
    for job in members {
        let state = job.state.map_or_else(|| "moving".to_string(), |s| s.to_string());
        let _ = write!(
            body,
            r#"<tr><td class="num"><a href="{}">{}</a></td><td>{}</td><td>{}</td><td><span class="pill state-{s}">{s}</span></td><td class="num">{}</td><td>{}</td></tr>"#,
            attr(&ctx.link(&format!("/jobs/{}", job.id))),
            job.id,
            esc(&job.kind),
            esc(&job.queue),
            job.attempts,
            maybe_time(job.finished_at),
            s = esc(&state),
        );
    }
    body.push_str("</tbody></table>");
    if members.len() >= MEMBERS_SHOWN {
        let _ = write!(body, r#"<p class="hint">The first {MEMBERS_SHOWN} jobs only.</p>"#);
    }
    body
}
