//! The Prometheus text exposition format (version 0.0.4), written by hand: a few HELP/TYPE
//! headers, escaped label values and cumulative histogram buckets are all it takes, and a
//! crate (`prometheus`, `prometheus-client`) would bring its own registry that the counts kept
//! in [`Metrics`] would have to be copied into anyway.

use std::fmt::Write;

use super::{ExecutionOutcome, Histogram, Metrics, BUCKETS};
use crate::store::metrics::GAUGE_STATES;
use crate::store::MetricGauges;

/// The `Content-Type` of a scrape's body.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escapes a label value: backslash, double quote and newline.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A number as Prometheus reads it.
fn number(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if value.is_nan() {
        "NaN".into()
    } else {
        format!("{value}")
    }
}

/// Builds an exposition, one metric family at a time.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    out: String,
}

impl Writer {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape_label(val));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }

    /// One gauge sample with its header.
    pub(crate) fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.header(name, "gauge", help);
        self.sample(name, labels, value);
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &Histogram) {
        let mut cumulative = 0;
        let bucket = format!("{name}_bucket");
        for (bound, count) in BUCKETS.iter().zip(histogram.buckets) {
            cumulative += count;
            let le = number(*bound);
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, cumulative as f64);
        }
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&bucket, &with_le, histogram.count as f64);
        self.sample(&format!("{name}_sum"), labels, histogram.sum);
        self.sample(&format!("{name}_count"), labels, histogram.count as f64);
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}

/// The database-wide gauges.
pub(crate) fn write_gauges(out: &mut Writer, gauges: &MetricGauges) {
    out.header("solidq_queue_jobs", "gauge", "Jobs per queue and state (from the execution tables).");
    for queue in &gauges.queues {
        for (state, jobs) in GAUGE_STATES.iter().zip(queue.jobs) {
            out.sample("solidq_queue_jobs", &[("queue", &queue.queue), ("state", state)], jobs as f64);
        }
    }
    out.header(
        "solidq_queue_latency_seconds",
        "gauge",
        "How long the job at the head of the queue (the next to be claimed) has waited since it became ready.",
    );
    for queue in &gauges.queues {
        out.sample("solidq_queue_latency_seconds", &[("queue", &queue.queue)], queue.latency.as_secs_f64());
    }
    out.header(
        "solidq_processes",
        "gauge",
        "Registered processes by heartbeat age: alive, late (older than half the alive threshold), dead.",
    );
    let p = gauges.processes;
    for (state, count) in [("alive", p.alive), ("late", p.late), ("dead", p.dead)] {
        out.sample("solidq_processes", &[("state", state)], count as f64);
    }
}

/// The series one process counted.
pub(crate) fn write_process(out: &mut Writer, metrics: &Metrics) {
    let (series, pruned, fenced) = metrics.snapshot();
    let each = || series.iter().flat_map(|(queue, kinds)| kinds.iter().map(move |(kind, s)| (queue, kind, s)));

    out.header("solidq_jobs_enqueued_total", "counter", "Jobs enqueued through this process's Queue handles.");
    for (queue, kind, s) in each() {
        out.sample("solidq_jobs_enqueued_total", &[("queue", queue), ("kind", kind)], s.enqueued as f64);
    }
    out.header(
        "solidq_jobs_executed_total",
        "counter",
        "Executions in this process whose outcome was written, by outcome.",
    );
    for (queue, kind, s) in each() {
        for outcome in ExecutionOutcome::ALL {
            let labels = [("queue", queue.as_str()), ("kind", kind.as_str()), ("outcome", outcome.as_str())];
            out.sample("solidq_jobs_executed_total", &labels, s.executed[outcome as usize] as f64);
        }
    }
    out.header("solidq_job_duration_seconds", "histogram", "How long executions ran, from start to outcome.");
    for (queue, kind, s) in each().filter(|(_, _, s)| s.duration.count > 0) {
        out.histogram("solidq_job_duration_seconds", &[("queue", queue), ("kind", kind)], &s.duration);
    }
    out.header(
        "solidq_job_queue_wait_seconds",
        "histogram",
        "How long jobs waited from becoming ready (enqueued, due, retried) until their execution started.",
    );
    for (queue, kind, s) in each().filter(|(_, _, s)| s.wait.count > 0) {
        out.histogram("solidq_job_queue_wait_seconds", &[("queue", queue), ("kind", kind)], &s.wait);
    }
    out.header("solidq_processes_pruned_total", "counter", "Dead processes this process's watchdog pruned.");
    out.sample("solidq_processes_pruned_total", &[], pruned as f64);
    out.header(
        "solidq_claims_fenced_total",
        "counter",
        "Outcomes refused because the claim was no longer this process's (it was pruned meanwhile).",
    );
    out.sample("solidq_claims_fenced_total", &[], fenced as f64);
    if let Some(age) = metrics.heartbeat_age() {
        out.gauge(
            "solidq_process_heartbeat_age_seconds",
            "Time since this process last wrote its heartbeat.",
            &[],
            age.as_secs_f64(),
        );
    }
    let lease = metrics.leadership.lease();
    out.gauge(
        "solidq_leader",
        "1 while this process is the elected leader (runs the maintenance sweeps), else 0.",
        &[],
        if lease.is_some() { 1.0 } else { 0.0 },
    );
    if let Some(lease) = lease {
        out.gauge("solidq_leader_term", "The term this process was elected leader for.", &[], lease.term as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_inf() {
        let mut h = Histogram::default();
        for ms in [1, 20, 20, 700_000] {
            h.observe(std::time::Duration::from_millis(ms));
        }
        let mut w = Writer::default();
        w.histogram("x", &[("queue", "q")], &h);
        let text = w.finish();
        assert!(text.contains("x_bucket{queue=\"q\",le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("x_bucket{queue=\"q\",le=\"0.025\"} 3\n"), "{text}");
        assert!(text.contains("x_bucket{queue=\"q\",le=\"600\"} 3\n"), "{text}");
        assert!(text.contains("x_bucket{queue=\"q\",le=\"+Inf\"} 4\n"), "{text}");
        assert!(text.contains("x_count{queue=\"q\"} 4\n"), "{text}");
    }
}
