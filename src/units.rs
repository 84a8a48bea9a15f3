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

/// `600`, `90s`, `2.5s`, `80ms`, `250us`, `10m`, `2h`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" => 1e-6,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    let v: f64 = num.parse().ok()?;
    let secs = v * scale;
    (secs.is_finite() && (0.0..=1e9).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

/// A round-trip time: as [`parse_duration`], but the unit is required (`80` could mean
/// seconds or milliseconds, and a wrong guess sizes buffers a thousand times off).
pub fn parse_rtt(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.ends_with(|c: char| c.is_ascii_digit() || c == '.') {
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
        assert_eq!(parse_duration("0.2s"), Some(Duration::from_millis(200)));
        assert_eq!(parse_duration("80ms"), Some(Duration::from_millis(80)));
        assert_eq!(parse_duration("250us"), Some(Duration::from_micros(250)));
        assert_eq!(parse_duration("10x"), None);
        assert_eq!(parse_duration("-1ms"), None);
        assert_eq!(parse_duration("1e300h"), None);
        assert_eq!(parse_rtt("50ms"), Some(Duration::from_millis(50)));
        assert_eq!(parse_rtt("120"), None);
    }
}
