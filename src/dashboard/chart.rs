//! Charts drawn on the server as SVG: no script, nothing fetched from elsewhere.

use std::fmt::Write as _;

use super::html::{count, esc};

/// One bar group of [`per_minute`]: the minute's label and its finished and failed counts.
pub(crate) struct Minute {
    pub label: String,
    pub finished: i64,
    pub failed: i64,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 160.0;
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 20.0;

/// Stacked bars of finished (below) and failed (above) jobs per minute, oldest left, with the
/// largest minute's total on the axis and every bar titled with its numbers.
pub(crate) fn per_minute(minutes: &[Minute]) -> String {
    let peak = minutes.iter().map(|m| m.finished + m.failed).max().unwrap_or(0).max(1);
    let plot_height = HEIGHT - BOTTOM - 8.0;
    let slot = (WIDTH - LEFT) / minutes.len().max(1) as f64;
    let bar = (slot - 2.0).max(1.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="jobs finished and failed per minute"><line class="axis" x1="{LEFT}" y1="{y0}" x2="{WIDTH}" y2="{y0}"/><text class="tick" x="{tx}" y="14" text-anchor="end">{peak_text}</text><text class="tick" x="{tx}" y="{y0}" text-anchor="end">0</text>"#,
        y0 = HEIGHT - BOTTOM,
        tx = LEFT - 6.0,
        peak_text = count(peak),
    );
    for (i, minute) in minutes.iter().enumerate() {
        let x = LEFT + i as f64 * slot + 1.0;
        let finished_h = plot_height * minute.finished as f64 / peak as f64;
        let failed_h = plot_height * minute.failed as f64 / peak as f64;
        let base = HEIGHT - BOTTOM;
        let _ = write!(
            svg,
            r#"<g><title>{label}: {finished} finished, {failed} failed</title><rect class="finished" x="{x:.1}" y="{fy:.1}" width="{bar:.1}" height="{finished_h:.1}"/><rect class="failed" x="{x:.1}" y="{ey:.1}" width="{bar:.1}" height="{failed_h:.1}"/></g>"#,
            label = esc(&minute.label),
            finished = count(minute.finished),
            failed = count(minute.failed),
            fy = base - finished_h,
            ey = base - finished_h - failed_h,
        );
        // Every tenth minute, and the last one ending at the right edge.
        let last = i + 1 == minutes.len();
        if (i % 10 == 0 && i + 5 < minutes.len()) || last {
            let (anchor, tx) = if last { ("end", x + bar) } else { ("start", x) };
            let _ = write!(
                svg,
                r#"<text class="tick" x="{tx:.1}" y="{ly}" text-anchor="{anchor}">{}</text>"#,
                esc(&minute.label),
                ly = HEIGHT - 4.0
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_peak_and_labels_are_escaped() {
        let minutes = vec![
            Minute { label: "<b>".into(), finished: 10, failed: 0 },
            Minute { label: "12:01".into(), finished: 5, failed: 5 },
        ];
        let svg = per_minute(&minutes);
        assert!(svg.contains("&lt;b&gt;: 10 finished, 0 failed"));
        assert!(!svg.contains("<b>"));
        assert!(svg.contains(r#"height="132.0""#), "{svg}");
    }
}
