//! LISTEN on the channel the `solidq_notify_ready` trigger of the URL's schema notifies: how
//! the workers of one process hear of jobs another process made ready.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_query;
use diesel::sql_types::Text;

/// How often the listener reads what the server sent: diesel exposes no socket to wait on, and
/// reading a quiet connection is one non-blocking `recv`, no statement.
const LISTEN_POLL: Duration = Duration::from_millis(1);
/// Longest wait between attempts to reconnect the listener.
const LISTEN_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A connection listening on the channel the `solidq_notify_ready` trigger of the URL's schema
/// notifies.
fn listening(url: &str) -> Result<PgConnection, String> {
    #[derive(QueryableByName)]
    struct Channel {
        #[diesel(sql_type = Text)]
        channel: String,
    }
    let mut conn = PgConnection::establish(url).map_err(|err| err.to_string())?;
    let channel: Channel = sql_query("SELECT 'solidq_ready_' || left(md5(current_schema()), 16) AS channel")
        .get_result(&mut conn)
        .map_err(|err| err.to_string())?;
    let listen = format!("LISTEN \"{}\"", channel.channel);
    diesel::connection::SimpleConnection::batch_execute(&mut conn, &listen).map_err(|err| err.to_string())?;
    Ok(conn)
}

/// Calls `wake` (at most once per poll) when the server tells of jobs made ready, until `stop`
/// is set; reconnects with backoff, and wakes after each reconnect (jobs may have become ready
/// meanwhile). Workers still poll, so a listener that cannot connect costs only latency.
pub(super) fn listen_for_ready(url: &str, wake: &dyn Fn(), stop: &std::sync::atomic::AtomicBool) {
    use std::sync::atomic::Ordering;
    let mut conn: Option<PgConnection> = None;
    let mut backoff = Duration::from_millis(100);
    let mut retry_at = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match conn.as_mut() {
            None if Instant::now() >= retry_at => match listening(url) {
                Ok(listener) => {
                    conn = Some(listener);
                    backoff = Duration::from_millis(100);
                    wake();
                }
                Err(_) => {
                    retry_at = Instant::now() + backoff;
                    backoff = (backoff * 2).min(LISTEN_MAX_BACKOFF);
                }
            },
            None => {}
            Some(listener) => {
                let (mut notified, mut broken) = (false, false);
                for notification in listener.notifications_iter() {
                    match notification {
                        Ok(_) => notified = true,
                        Err(_) => {
                            broken = true;
                            break;
                        }
                    }
                }
                if broken {
                    conn = None;
                    retry_at = Instant::now() + backoff;
                }
                if notified {
                    wake();
                }
            }
        }
        std::thread::sleep(LISTEN_POLL);
    }
}
