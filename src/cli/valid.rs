//! clap value parsers that check an option's text when it is given, so a mistake names its
//! flag (and, from a config file, its line) before anything starts; the text is kept and parsed
//! again where it is used.

fn keep<T, E: std::fmt::Display>(s: &str, parsed: Result<T, E>) -> Result<String, String> {
    parsed.map(|_| s.to_string()).map_err(|e| e.to_string())
}

fn keep_anyhow<T>(s: &str, parsed: anyhow::Result<T>) -> Result<String, String> {
    parsed.map(|_| s.to_string()).map_err(|e| format!("{e:#}"))
}

pub fn duration(s: &str) -> Result<String, String> {
    keep_anyhow(s, super::parse_duration(s))
}

pub fn rate(s: &str) -> Result<String, String> {
    keep(s, crate::units::parse_rate(s).ok_or("not a rate: e.g. 10gbit, 250m"))
}

pub fn port_range(s: &str) -> Result<String, String> {
    keep_anyhow(s, super::parse_port_range(s))
}

pub fn cpus(s: &str) -> Result<String, String> {
    keep_anyhow(s, super::cpu_list(Some(s)))
}

pub fn checksums(s: &str) -> Result<String, String> {
    keep_anyhow(s, super::parse_checksum_list(s))
}

pub fn data_path(s: &str) -> Result<String, String> {
    keep_anyhow(s, super::parse_data_path(s))
}

pub fn networks(s: &str) -> Result<String, String> {
    keep_anyhow(s, super::networks_arg(Some(s)))
}

pub fn congestion(s: &str) -> Result<String, String> {
    keep(s, s.parse::<crate::pool::tcp::Congestion>())
}
