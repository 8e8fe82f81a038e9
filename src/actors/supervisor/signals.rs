//! Signals, when the runtime owns the process (`Runtime::run`): TERM or INT drain, a second
//! one or QUIT exits at once.

use actix::prelude::*;
use slog::{error, info, warn};

use super::{Shutdown, Supervisor};

impl Supervisor {
    pub(super) fn listen_for_signals(&self, ctx: &mut Context<Self>) {
        use actix_rt::signal::unix::{signal, SignalKind};
        let logger = self.logger.clone();
        let me = ctx.address();
        actix_rt::spawn(async move {
            let (Ok(mut term), Ok(mut int), Ok(mut quit)) =
                (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::quit()))
            else {
                error!(logger, "could not install signal handlers");
                return;
            };
            let mut draining = false;
            loop {
                let name = tokio_select(&mut term, &mut int, &mut quit).await;
                if name == "QUIT" || draining {
                    warn!(logger, "exiting at once; claims are left for the watchdog of another process"; "signal" => name);
                    std::process::exit(0);
                }
                info!(logger, "draining: no new claims, waiting for running jobs"; "signal" => name);
                draining = true;
                me.do_send(Shutdown { immediate: false });
            }
        });
    }
}

/// Waits for the first of TERM, INT or QUIT and names it.
async fn tokio_select(
    term: &mut actix_rt::signal::unix::Signal,
    int: &mut actix_rt::signal::unix::Signal,
    quit: &mut actix_rt::signal::unix::Signal,
) -> &'static str {
    use futures_util::future::{select, Either};
    let first = select(Box::pin(term.recv()), Box::pin(int.recv()));
    match select(first, Box::pin(quit.recv())).await {
        Either::Left((Either::Left(_), _)) => "TERM",
        Either::Left((Either::Right(_), _)) => "INT",
        Either::Right(_) => "QUIT",
    }
}
