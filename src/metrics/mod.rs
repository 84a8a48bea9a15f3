//! Process-wide Prometheus metrics (`prometheus-client`): the engine, pools and doors bump
//! them where things happen; `--metrics-listen` serves [`encode`]'s text. Counters cost one
//! atomic add; hot paths keep the handle of their own label set instead of looking it up.

use std::sync::LazyLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub mod http;

/// One label set: (name, value) pairs.
pub type Labels = Vec<(&'static str, String)>;

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    /// Every metric's full name (counters without their `_total`).
    names: Vec<String>,
    /// Finished transfers by direction (upload, download, listing) and result (ok or the
    /// reply code).
    pub transfers: Family<Labels, Counter>,
    /// Bytes moved by finished transfers, by direction.
    pub transfer_bytes: Family<Labels, Counter>,
    /// Transfers running now, by direction.
    pub transfers_active: Family<Labels, Gauge>,
    /// Control sessions open now.
    pub sessions_active: Gauge,
    /// Failed logins by method (password, gsi, tls).
    pub login_failures: Family<Labels, Counter>,
    /// Socket-buffer choice per transfer: client (SBUF/ABUF), automatic, autotuning.
    pub buffer_decisions: Family<Labels, Counter>,
    /// ABUF commands by what they decided: fixed or autotuning.
    pub abuf_decisions: Family<Labels, Counter>,
    /// Bytes run through checksums, by algorithm.
    pub checksum_bytes: Family<Labels, Counter>,
    /// Per engine core: data bytes moved.
    pub core_bytes: Family<Labels, Counter>,
    /// Per engine core: io_uring completions handled.
    pub core_ops: Family<Labels, Counter>,
    /// Per engine core: transfers in flight (one op each).
    pub core_queue: Family<Labels, Gauge>,
    /// Per engine core: bytes moved by sendfile/splice without a copy through user space.
    pub core_zero_copy_bytes: Family<Labels, Counter>,
    /// Per pool known to a door: 1 while its link is up.
    pub pool_linked: Family<Labels, Gauge>,
    /// Per pool known to a door: movers running on it.
    pub pool_load: Family<Labels, Gauge>,
}

/// Registers metrics and remembers their names.
struct Builder {
    registry: Registry,
    names: Vec<String>,
}

impl Builder {
    fn add<M: prometheus_client::registry::Metric + Clone>(&mut self, name: &str, help: &str, metric: M) -> M {
        self.registry.register(name, help, metric.clone());
        self.names.push(format!("ringmover_{name}"));
        metric
    }

    fn counters(&mut self, name: &str, help: &str) -> Family<Labels, Counter> {
        self.add(name, help, Family::default())
    }

    fn gauges(&mut self, name: &str, help: &str) -> Family<Labels, Gauge> {
        self.add(name, help, Family::default())
    }
}

impl Metrics {
    fn new() -> Metrics {
        let mut b = Builder {
            registry: Registry::with_prefix("ringmover"),
            names: Vec::new(),
        };
        Metrics {
            sessions_active: b.add("sessions_active", "Control sessions open", Gauge::default()),
            transfers: b.counters("transfers", "Finished transfers by direction and result"),
            transfer_bytes: b.counters("transfer_bytes", "Bytes moved by finished transfers"),
            transfers_active: b.gauges("transfers_active", "Transfers running"),
            login_failures: b.counters("login_failures", "Failed logins by method"),
            buffer_decisions: b.counters(
                "buffer_decisions",
                "Socket buffer choice per transfer: client (SBUF/ABUF), automatic, or kernel autotuning",
            ),
            abuf_decisions: b.counters("abuf_decisions", "ABUF commands by decision: fixed or autotuning"),
            checksum_bytes: b.counters("checksum_bytes", "Bytes checksummed by algorithm"),
            core_bytes: b.counters("engine_bytes", "Data bytes moved per engine core"),
            core_ops: b.counters("engine_ops", "io_uring completions per engine core"),
            core_queue: b.gauges("engine_queue_depth", "Transfers in flight per engine core"),
            core_zero_copy_bytes: b.counters(
                "engine_zero_copy_bytes",
                "Bytes moved per engine core by sendfile/splice, never copied through user space",
            ),
            pool_linked: b.gauges("pool_linked", "1 while a pool's link to the door is up"),
            pool_load: b.gauges("pool_load", "Movers running per pool"),
            registry: b.registry,
            names: b.names,
        }
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// Every metric's name (counters without their `_total`), for checks of dashboards and docs.
pub fn names() -> &'static [String] {
    &get().names
}

/// One label.
pub fn label(name: &'static str, value: impl Into<String>) -> Labels {
    vec![(name, value.into())]
}

/// The OpenMetrics text of every metric.
pub fn encode() -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &get().registry);
    out
}

/// Adds 1 to a gauge now and takes it back when dropped.
pub struct Active(Gauge);

impl Active {
    pub fn new(gauge: Gauge) -> Active {
        gauge.inc();
        Active(gauge)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_in_the_text() {
        get()
            .transfer_bytes
            .get_or_create(&label("direction", "test"))
            .inc_by(42);
        {
            let _a = Active::new(
                get()
                    .transfers_active
                    .get_or_create(&label("direction", "test"))
                    .clone(),
            );
            assert!(encode().contains("ringmover_transfers_active{direction=\"test\"} 1"));
        }
        let text = encode();
        assert!(
            text.contains("ringmover_transfer_bytes_total{direction=\"test\"} 42"),
            "{text}"
        );
        assert!(
            text.contains("ringmover_transfers_active{direction=\"test\"} 0"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn the_dashboard_names_only_metrics_that_exist() {
        let dashboard = include_str!("../../scripts/grafana-dashboard.json");
        let mut checked = 0;
        for (at, _) in dashboard.match_indices("ringmover_") {
            let name: String = dashboard[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let family = name.strip_suffix("_total").unwrap_or(&name);
            assert!(names().iter().any(|n| n == family), "{name} is not a metric");
            checked += 1;
        }
        assert!(checked >= 12, "{checked}");
    }
}
