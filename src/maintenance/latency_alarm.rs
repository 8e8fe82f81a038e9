//! Latency alarm: raises [`Event::QueueLatencyHigh`] when the job at the head of a queue (the next to be claimed)
//! has waited longer than `SOLIDQ_ALERT_QUEUE_LATENCY`, and [`Event::QueueLatencyRecovered`]
//! when it is back under. Runs only where that variable is set.
//!
//! Once per crossing across the cluster: only the elected leader runs it (one grouped
//! statement per pass). A new leader starts without the old one's state: a queue still above
//! the threshold when leadership changes is reported once more by the new leader.

use std::collections::BTreeMap;
use std::time::Duration;

use slog::{error, info, Logger};

use super::{Pass, Service};
use crate::events::Event;
use crate::metrics::Telemetry;
use crate::store::{Store, StoreResult};

/// Time between passes.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// The alarm's settings.
#[derive(Debug, Clone)]
pub struct LatencyAlarmConfig {
    /// `SOLIDQ_ALERT_QUEUE_LATENCY`: a queue whose head job waited longer is alarmed.
    pub threshold: Duration,
    /// Time between passes.
    pub interval: Duration,
}

/// What a pass found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlarmOutcome {
    /// Events raised by this pass (empty for a pass outside the election, which only tracks).
    pub raised: Vec<Event>,
    /// Whether the pass ran as the elected leader (and emitted).
    pub leader: bool,
}

/// The alarm service.
#[derive(Debug, Clone)]
pub struct LatencyAlarm {
    config: LatencyAlarmConfig,
    /// Queues over the threshold as of the last pass.
    high: BTreeMap<String, bool>,
    telemetry: Option<Telemetry>,
}

impl LatencyAlarm {
    /// An alarm with `config`.
    pub fn new(config: LatencyAlarmConfig) -> Self {
        LatencyAlarm { config, high: BTreeMap::new(), telemetry: None }
    }

    pub(crate) fn reporting_to(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }
}

impl Service for LatencyAlarm {
    type Outcome = AlarmOutcome;
    const NAME: &'static str = "latency alarm";

    fn interval(&self) -> Duration {
        self.config.interval
    }

    fn run_once(&mut self, store: &Store, pass: Pass) -> StoreResult<AlarmOutcome> {
        let latencies = store.ready_latencies(pass.now)?;
        let leader = pass.lease.is_some();
        let threshold = self.config.threshold;
        let mut raised = Vec::new();
        // Queues without ready jobs have no latency: they are back under the threshold.
        let queues: Vec<String> = self.high.keys().cloned().chain(latencies.keys().cloned()).collect();
        for queue in queues {
            let latency = latencies.get(&queue).copied().unwrap_or_default();
            let high = latency > threshold;
            let was = self.high.get(&queue).copied().unwrap_or(false);
            if high != was {
                raised.push(if high {
                    Event::QueueLatencyHigh { queue: queue.clone(), latency, threshold }
                } else {
                    Event::QueueLatencyRecovered { queue: queue.clone(), latency, threshold }
                });
            }
            if high {
                self.high.insert(queue, true);
            } else {
                self.high.remove(&queue);
            }
        }
        if !leader {
            raised.clear();
        }
        if let Some(telemetry) = &self.telemetry {
            raised.iter().for_each(|event| telemetry.events.emit(event.clone()));
        }
        Ok(AlarmOutcome { raised, leader })
    }

    fn report(outcome: &AlarmOutcome, logger: &Logger) {
        for event in &outcome.raised {
            match event {
                Event::QueueLatencyHigh { queue, latency, threshold } => {
                    error!(logger, "queue latency above the alert threshold"; "queue" => queue,
                        "latency_ms" => latency.as_millis() as u64, "threshold_ms" => threshold.as_millis() as u64)
                }
                other => info!(logger, "queue latency back under the alert threshold"; "event" => other.name()),
            }
        }
    }
}
