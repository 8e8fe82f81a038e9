//! HTML by hand, with one rule: every piece of text that is not a literal of this crate goes
//! through [`esc`] (or [`attr`], the same escaping) before it joins the page. Job arguments,
//! kinds, queue names, error messages and backtraces are user data.

use std::fmt::Write as _;

use chrono::NaiveDateTime;

/// `text` with `&`, `<`, `>`, `"` and `'` replaced by entities: safe as element text and inside
/// a double- or single-quoted attribute.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// An attribute value: the same escaping as [`esc`], named for the place it goes.
pub fn attr(text: &str) -> String {
    esc(text)
}

/// `text` percent-encoded for a query-string value.
pub fn url_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// A UTC time as the pages show it.
pub fn time(at: NaiveDateTime) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// An optional time, or a dash.
pub fn maybe_time(at: Option<NaiveDateTime>) -> String {
    at.map_or_else(|| "–".to_string(), time)
}

/// A count with thousands separators: `12,345`.
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// Seconds as a short age: `4.2s`, `3m 10s`, `2h 5m`, `3d 4h`.
pub fn seconds(total: f64) -> String {
    if !total.is_finite() {
        return "–".into();
    }
    let negative = total < 0.0;
    let t = total.abs();
    let text = if t < 60.0 {
        format!("{t:.1}s")
    } else if t < 3600.0 {
        format!("{}m {}s", (t / 60.0) as u64, (t % 60.0) as u64)
    } else if t < 86400.0 {
        format!("{}h {}m", (t / 3600.0) as u64, ((t % 3600.0) / 60.0) as u64)
    } else {
        format!("{}d {}h", (t / 86400.0) as u64, ((t % 86400.0) / 3600.0) as u64)
    };
    if negative {
        format!("in {text}")
    } else {
        text
    }
}

/// JSON text pretty-printed when it parses, as stored otherwise (escaped by the caller).
pub fn pretty_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| text.to_string())
}

/// `text` cut to `max` characters, with an ellipsis when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(max).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn counts_have_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(-1000), "-1,000");
    }

    #[test]
    fn url_values_are_encoded() {
        assert_eq!(url_value("a b&c=<d>"), "a%20b%26c%3D%3Cd%3E");
    }
}
