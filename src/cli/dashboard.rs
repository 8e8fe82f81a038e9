//! `solidq dashboard`: serves the web dashboard over `SOLIDQ_DATABASE_URL` until interrupted.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use actix_web::{App, HttpServer};
use clap::Args;

use super::common::{connect_existing, Failure};
use crate::config::Config;
use crate::dashboard::{self, DashboardOptions, ProbeAnswer};
use crate::health;
use crate::metrics::Exporter;

/// `solidq dashboard`.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Address to serve on. Anything but loopback needs SOLIDQ_DASHBOARD_TOKEN.
    #[arg(long, default_value = dashboard::DEFAULT_BIND, value_name = "HOST:PORT")]
    pub bind: String,
    /// Serve under this path prefix (e.g. /solidq behind a reverse proxy).
    #[arg(long, default_value = "", value_name = "PATH")]
    pub prefix: String,
}

/// The address `text` names (the first, if a host name resolves to several).
fn address_of(text: &str) -> Result<SocketAddr, Failure> {
    let mut addresses = text.to_socket_addrs().map_err(|err| {
        Failure::Usage(format!("--bind {text:?} is not an address to serve on ({err}): use e.g. 127.0.0.1:9292"))
    })?;
    addresses.next().ok_or_else(|| Failure::Usage(format!("--bind {text:?} resolves to no address")))
}

/// Reads the dashboard's variables through `lookup`, refuses a non-loopback address without
/// a token (exit 2, before touching the database), then serves until TERM or INT.
pub(super) fn serve(
    args: DashboardArgs,
    config: &Config,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let options = DashboardOptions::from_lookup(lookup).map_err(Failure::Config)?;
    let address = address_of(&args.bind)?;
    dashboard::check_bind(address, &options).map_err(|refused| Failure::Usage(refused.to_string()))?;
    let store = connect_existing(config, "serving the dashboard")?;
    // The database-wide gauges (cached a few seconds, so scrapes stay cheap); this process runs
    // no jobs, so it has no per-process series.
    let exporter = Arc::new(Exporter::new(store.clone(), config.alive_threshold));
    let probe_store = store.clone();
    let options = options
        .alive_threshold(config.alive_threshold)
        .metrics(move || exporter.scrape())
        .live(|| ProbeAnswer { ok: true, reason: "the dashboard answers".into() })
        .ready(move || {
            let health = health::database_ready(&probe_store);
            ProbeAnswer { ok: health.ok, reason: health.reason }
        });
    let prefix = args.prefix.clone();
    let read_only = options.read_only;
    actix_web::rt::System::new().block_on(async move {
        let server =
            HttpServer::new(move || App::new().service(dashboard::scope(&prefix, store.clone(), options.clone())))
                .workers(2)
                .bind(address)
                .map_err(|err| Failure::Usage(format!("cannot serve on {address}: {err}")))?;
        for bound in server.addrs() {
            let _ = writeln!(
                out,
                "solidq dashboard on http://{bound}{}/ ({}{}); Ctrl-C stops it",
                args.prefix.trim_end_matches('/'),
                config.database_url,
                if read_only { ", read-only" } else { "" }
            );
        }
        let _ = out.flush();
        server.run().await.map_err(|err| Failure::Usage(format!("the dashboard server failed: {err}")))
    })
}
