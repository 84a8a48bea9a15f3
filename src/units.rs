//! The one grammar for rates and durations on the command line, in config files and in
//! OPTS/ABUF arguments.

use std::time::Duration;

/// `10gbit`, `200mbit`, `800kbit`, `5000bit`, `10g`, `200m` or plain bits per second.
pub fn parse_rate(s: &str) -> Option<f64> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mul) = [
        ("gbit", 1e9),
        ("mbit", 1e6),
        ("kbit", 1e3),
        ("bit", 1.0),
        ("g", 1e9),
        ("m", 1e6),
        ("k", 1e3),
    ]
    .iter()
    .find_map(|(u, m)| s.strip_suffix(u).map(|n| (n.to_string(), *m)))
    .unwrap_or((s.clone(), 1.0));
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v > 0.0).then_some(v * mul)
}

/// `600`, `90s`, `80ms`, `250us`, `10m`, `2h`, `1m 30s` (humantime's grammar); a bare number
/// is seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let d = match s.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s).ok()?,
    };
    (d <= Duration::from_secs(1_000_000_000)).then_some(d)
}

/// A round-trip time: as [`parse_duration`], but the unit is required (`80` could mean
/// seconds or milliseconds, and a wrong guess sizes buffers a thousand times off).
pub fn parse_rtt(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.ends_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    parse_duration(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("1gbit"), Some(1e9));
        assert_eq!(parse_rate("250Mbit"), Some(250e6));
        assert_eq!(parse_rate("250m"), Some(250e6));
        assert_eq!(parse_rate("5000bit"), Some(5000.0));
        assert_eq!(parse_rate("5000"), Some(5000.0));
        assert_eq!(parse_rate("fast"), None);
        assert_eq!(parse_rate("0"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("600"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1m 30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("200ms"), Some(Duration::from_millis(200)));
        assert_eq!(parse_duration("80ms"), Some(Duration::from_millis(80)));
        assert_eq!(parse_duration("250us"), Some(Duration::from_micros(250)));
        assert_eq!(parse_duration("10x"), None);
        assert_eq!(parse_duration("-1ms"), None);
        assert_eq!(parse_duration("1e300h"), None);
        assert_eq!(parse_rtt("50ms"), Some(Duration::from_millis(50)));
        assert_eq!(parse_rtt("120"), None);
    }
}
