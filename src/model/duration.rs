//! Durations as people write them in settings and read them in messages: `500ms`, `10s`,
//! `2m30s`, `1h`, `1d` or bare seconds.

use std::time::Duration;

use super::Malformed;

/// How to write a duration, shown in error messages.
pub const DURATION_FORM: &str = "use e.g. 500ms, 10s, 5m, 2h, 1d or bare seconds";

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Parses a duration: `500ms`, `10s`, `5m`, `1h`, a combination such as `1h30m` or `2m10s`,
/// or bare seconds (`30`, `1.5`). Each amount may have a decimal fraction. Zero is accepted
/// here; the configuration rejects it where an interval must be positive.
///
/// The error says what is wrong and what is accepted.
///
/// ```
/// use std::time::Duration;
/// use solidq::model::duration::parse_duration;
///
/// assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
/// assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
/// assert_eq!(parse_duration("2m10s"), Ok(Duration::from_secs(130)));
/// assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
/// assert!(parse_duration("ten").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_duration_detailed(text).map_err(|malformed| malformed.to_string())
}

/// [`parse_duration`], with the problem and the accepted form apart.
pub fn parse_duration_detailed(text: &str) -> Result<Duration, Malformed> {
    let not_a_duration = || Malformed::new("is not a duration", DURATION_FORM);
    let text = text.trim();
    let is_number_char = |c: char| c.is_ascii_digit() || c == '.';
    if text.is_empty() {
        return Err(not_a_duration());
    }
    let nanos = if text.chars().all(is_number_char) {
        amount_in_nanos(text, NANOS_PER_SEC).ok_or_else(not_a_duration)?
    } else {
        let mut total: u128 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let number_len = rest.find(|c| !is_number_char(c)).unwrap_or(rest.len());
            let (number, after) = rest.split_at(number_len);
            let unit_len = after.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            let scale = match unit {
                "ms" => 1_000_000,
                "s" => NANOS_PER_SEC,
                "m" => 60 * NANOS_PER_SEC,
                "h" => 3600 * NANOS_PER_SEC,
                "d" => 86_400 * NANOS_PER_SEC,
                _ => return Err(not_a_duration()),
            };
            let amount = amount_in_nanos(number, scale).ok_or_else(not_a_duration)?;
            total = total.checked_add(amount).ok_or_else(not_a_duration)?;
            rest = after;
        }
        total
    };
    let secs = u64::try_from(nanos / NANOS_PER_SEC).map_err(|_| not_a_duration())?;
    Ok(Duration::new(secs, (nanos % NANOS_PER_SEC) as u32))
}

/// `number` (digits with at most one `.`) times `scale` nanoseconds, truncated to whole
/// nanoseconds; `None` if malformed or out of range.
fn amount_in_nanos(number: &str, scale: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return None;
    }
    let whole: u128 = if whole.is_empty() { 0 } else { whole.parse::<u64>().ok()?.into() };
    // Digits beyond the 18th are below a nanosecond for every unit accepted.
    let fraction = &fraction[..fraction.len().min(18)];
    let fraction_nanos = if fraction.is_empty() {
        0
    } else {
        let numerator: u128 = fraction.parse().ok()?;
        numerator * scale / 10u128.pow(fraction.len() as u32)
    };
    whole.checked_mul(scale)?.checked_add(fraction_nanos)
}

/// Formats a duration the way [`parse_duration`] reads it: `500ms`, `30s`, `2m10s`, `1h30m`.
/// Parts below a millisecond are dropped (a nonzero duration shorter than that shows as
/// `<1ms`).
///
/// ```
/// use std::time::Duration;
/// use solidq::model::duration::format_duration;
///
/// assert_eq!(format_duration(Duration::from_secs(130)), "2m10s");
/// assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
/// assert_eq!(format_duration(Duration::ZERO), "0s");
/// ```
pub fn format_duration(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".to_string();
    }
    let secs = duration.as_secs();
    let parts =
        [(secs / 3600, "h"), ((secs % 3600) / 60, "m"), (secs % 60, "s"), (u64::from(duration.subsec_millis()), "ms")];
    let text: String =
        parts.iter().filter(|(amount, _)| *amount > 0).map(|(amount, unit)| format!("{amount}{unit}")).collect();
    if text.is_empty() {
        "<1ms".to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit_and_combination() {
        // Each case is `text=milliseconds`.
        let cases = "500ms=500 10s=10000 5m=300000 1h=3600000 30=30000 1.5=1500 0.1=100 .25s=250 1.5m=90000 \
                     2m10s=130000 1h30m=5400000 1s500ms=1500 0=0 0.0000000001=0";
        for case in cases.split_whitespace() {
            let (text, millis) = case.split_once('=').unwrap();
            assert_eq!(parse_duration(text), Ok(Duration::from_millis(millis.parse().unwrap())), "{text}");
        }
        assert_eq!(parse_duration(" 10s "), Ok(Duration::from_secs(10)), "spaces around");
    }

    #[test]
    fn malformed_durations_are_rejected_with_the_accepted_form() {
        for text in [
            "",
            "ten",
            "10 s",
            "10sec",
            "-5s",
            "5x",
            "1.2.3",
            ".",
            "s",
            "1m30",
            "ms10",
            "1e3",
            "99999999999999999999",
            "10S",
        ] {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains("500ms, 10s, 5m"), "{text}: {err}");
        }
    }

    #[test]
    fn formatted_durations_parse_back() {
        for millis in [1, 500, 1_000, 1_500, 59_999, 60_000, 130_000, 3_600_000, 5_430_123] {
            let duration = Duration::from_millis(millis);
            assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }
        assert_eq!(format_duration(Duration::from_nanos(10)), "<1ms");
    }
}
