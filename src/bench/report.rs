//! Bench output: a table with ratios to the peer measured in the same run, CSV, an SVG plot of
//! each sweep, and the targets checked against the medians.

use std::fmt::Write as _;

use plotters::prelude::*;

use super::{Case, Point, Scenario};

/// The peer each scenario is compared with.
fn reference_tool(s: Scenario) -> &'static str {
    match s {
        Scenario::M2m | Scenario::Wan => "iperf3",
        _ => "guc ⇄ globus-gridftp-server",
    }
}

/// Same point for the peers: they have no engine path.
fn same_point(a: &Point, b: &Point) -> bool {
    a.streams == b.streams && a.block_size == b.block_size && a.tcp_bs == b.tcp_bs
}

/// The reference case for `c` (the peer at the same point), if it was measured.
pub fn reference<'a>(cases: &'a [Case], c: &Case) -> Option<&'a Case> {
    let tool = reference_tool(c.scenario);
    cases.iter().find(|r| {
        r.scenario == c.scenario
            && r.tool == tool
            && r.cc == c.cc
            && (same_point(&r.point, &c.point)
                || (matches!(c.scenario, Scenario::M2m | Scenario::Wan)
                    && r.point.streams == c.point.streams
                    && r.point.tcp_bs == c.point.tcp_bs))
    })
}

/// (throughput ratio, machine CPU-s/GB ratio) of `c` to its reference.
pub fn ratios(cases: &[Case], c: &Case) -> Option<(f64, f64)> {
    let r = reference(cases, c)?;
    let t = c.median.gbytes_per_s / r.median.gbytes_per_s.max(1e-12);
    let cpu = c.median.cpu_s_per_gb / r.median.cpu_s_per_gb.max(1e-12);
    Some((t, cpu))
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}

/// The slowest and fastest run's GB/s: a wide span, or two clusters, is a finding.
fn spread(c: &Case) -> String {
    let rates = c.runs.iter().map(|s| s.gbytes_per_s);
    let (lo, hi) = rates.fold((f64::INFINITY, 0.0f64), |(lo, hi), r| (lo.min(r), hi.max(r)));
    if lo.is_finite() {
        format!("{lo:.2}..{hi:.2}")
    } else {
        "-".into()
    }
}

pub fn table(cases: &[Case]) -> String {
    let mut out = format!(
        "{:<9} {:<30} {:<30} {:>7} {:>13} {:>8} {:>8} {:>8} {:>8} {:>8} {:>14}\n",
        "scenario",
        "tool",
        "point",
        "GB/s",
        "min..max",
        "CPU-s/GB",
        "client",
        "server",
        "x GB/s",
        "x CPU",
        "op µs p50/p99"
    );
    for c in cases {
        let (t, cpu) = ratios(cases, c).map_or(("-".into(), "-".into()), |(t, c)| {
            (format!("x{t:.2}"), format!("x{c:.2}"))
        });
        let lat = c
            .op_latency_us
            .as_ref()
            .map_or("-".into(), |l| format!("{}/{}", l.p50, l.p99));
        let _ = writeln!(
            out,
            "{:<9} {:<30} {:<30} {:>7.3} {:>13} {:>8.3} {:>8} {:>8} {:>8} {:>8} {:>14}",
            c.scenario.name(),
            c.tool,
            c.label(),
            c.median.gbytes_per_s,
            spread(c),
            c.median.cpu_s_per_gb,
            opt(c.median.client_cpu_s_per_gb),
            opt(c.median.server_cpu_s_per_gb),
            t,
            cpu,
            lat
        );
    }
    out
}

/// One CSV row per case (medians), with the ratios.
pub fn csv(cases: &[Case], to: impl std::io::Write) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_writer(to);
    w.write_record([
        "scenario",
        "tool",
        "streams",
        "block_size",
        "tcp_bs",
        "path",
        "runs",
        "gbytes_per_s",
        "cpu_s_per_gb",
        "client_cpu_s_per_gb",
        "server_cpu_s_per_gb",
        "ratio_gbytes_per_s",
        "ratio_cpu",
        "op_p50_us",
        "op_p99_us",
    ])?;
    for c in cases {
        let r = ratios(cases, c);
        let f = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.4}"));
        let lat = c.op_latency_us.as_ref();
        w.write_record([
            c.scenario.name().to_string(),
            c.tool.clone(),
            c.point.streams.to_string(),
            c.point.block_size.map_or(String::new(), |b| b.to_string()),
            c.point.tcp_bs.map_or(String::new(), |b| b.to_string()),
            format!("{:?}", c.point.path).to_ascii_lowercase(),
            c.runs.len().to_string(),
            format!("{:.4}", c.median.gbytes_per_s),
            format!("{:.4}", c.median.cpu_s_per_gb),
            f(c.median.client_cpu_s_per_gb),
            f(c.median.server_cpu_s_per_gb),
            f(r.map(|r| r.0)),
            f(r.map(|r| r.1)),
            lat.map_or(String::new(), |l| l.p50.to_string()),
            lat.map_or(String::new(), |l| l.p99.to_string()),
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// GB/s over the sweep's points, one panel per scenario, one line per tool (plotters, SVG).
pub fn svg(cases: &[Case]) -> String {
    let scenarios: Vec<Scenario> = cases.iter().fold(Vec::new(), |mut v, c| {
        if !v.contains(&c.scenario) {
            v.push(c.scenario);
        }
        v
    });
    let mut out = String::new();
    {
        let height = 300 * scenarios.len().max(1) as u32;
        let root = SVGBackend::with_string(&mut out, (760, height)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let panels = root.split_evenly((scenarios.len().max(1), 1));
        for (s, area) in scenarios.iter().zip(panels.iter()) {
            if let Err(e) = panel(area, cases, *s) {
                tracing::warn!("bench plot of {}: {e}", s.name());
            }
        }
        let _ = root.present();
    }
    out
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type PlotError<'a> = DrawingAreaErrorKind<<SVGBackend<'a> as DrawingBackend>::ErrorType>;

fn panel<'a>(area: &Area<'a>, cases: &[Case], s: Scenario) -> Result<(), PlotError<'a>> {
    let mine: Vec<&Case> = cases.iter().filter(|c| c.scenario == s).collect();
    let mut labels: Vec<String> = Vec::new();
    let mut tools: Vec<&str> = Vec::new();
    for c in &mine {
        let l = c.label();
        if !labels.contains(&l) {
            labels.push(l);
        }
        if !tools.contains(&c.tool.as_str()) {
            tools.push(&c.tool);
        }
    }
    let ymax = mine.iter().map(|c| c.median.gbytes_per_s).fold(0.0, f64::max).max(0.1) * 1.1;
    let n = labels.len().max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{} (GB/s, median)", s.name()), ("sans-serif", 14))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(45)
        .build_cartesian_2d(-0.5..n - 0.5, 0.0..ymax)?;
    let label_of = |x: &f64| {
        let i = x.round();
        let on_point = (x - i).abs() < 1e-6 && i >= 0.0;
        on_point
            .then(|| labels.get(i as usize).cloned())
            .flatten()
            .unwrap_or_default()
    };
    chart
        .configure_mesh()
        .x_labels(labels.len().max(1))
        .x_label_formatter(&label_of)
        .y_desc("GB/s")
        .draw()?;
    for (t, tool) in tools.iter().enumerate() {
        let color = Palette99::pick(t).to_rgba();
        let points: Vec<(f64, f64)> = labels
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                mine.iter()
                    .find(|c| c.tool == *tool && &c.label() == l)
                    .map(|c| (i as f64, c.median.gbytes_per_s))
            })
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(*tool)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    Ok(())
}

/// The m2m rows of our engine: sendfile from an in-memory file, and io_uring `Send` of one
/// buffer again and again (a copy per byte on the sending side).
pub const M2M_SENDFILE: &str = "ringmover sendfile";
pub const M2M_SEND: &str = "ringmover send";

/// One of the targets, checked against this run's medians.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Target {
    pub what: String,
    pub want: String,
    pub got: String,
    pub met: Option<bool>,
}

/// The targets: m2m one stream ≥ 1.5× max(iperf3, iperf3 -Z) at ≤ 0.5× iperf3's CPU-s/GB;
/// downloads (stream, -p 4) ≥ 2× Globus at ≤ 0.5× its CPU-s/GB; uploads ≥ 1.5× Globus; disk
/// reads and writes with direct I/O ≥ 0.9× fio and ≥ 1.5× Globus.
pub fn targets(cases: &[Case]) -> Vec<Target> {
    let find = |s: Scenario, tool: &str, streams: u32| {
        cases.iter().find(|c| {
            c.scenario == s
                && c.tool == tool
                && c.point.streams == streams
                && c.point.block_size.is_none()
                && c.point.tcp_bs.is_none()
        })
    };
    let mut out = Vec::new();
    let iperf = find(Scenario::M2m, "iperf3", 1);
    let best_peer = [iperf, find(Scenario::M2m, "iperf3 -Z", 1)]
        .into_iter()
        .flatten()
        .max_by(|a, b| a.median.gbytes_per_s.total_cmp(&b.median.gbytes_per_s));
    for ours in [M2M_SENDFILE, M2M_SEND] {
        let got = find(Scenario::M2m, ours, 1)
            .zip(best_peer)
            .zip(iperf)
            .map(|((a, b), i)| {
                (
                    a.median.gbytes_per_s / b.median.gbytes_per_s,
                    a.median.cpu_s_per_gb / i.median.cpu_s_per_gb,
                )
            });
        out.push(Target {
            what: format!("m2m, 1 stream, {ours} vs max(iperf3, iperf3 -Z)"),
            want: "≥ 1.5× GB/s at ≤ 0.5× iperf3 CPU-s/GB".into(),
            got: got.map_or("not measured".into(), |(t, c)| {
                format!("{t:.2}× GB/s, {c:.2}× CPU-s/GB")
            }),
            met: got.map(|(t, c)| t >= 1.5 && c <= 0.5),
        });
    }
    for (s, streams, want, cpu_max) in [
        (Scenario::Download, 1, 2.0, Some(0.5)),
        (Scenario::Download, 4, 2.0, Some(0.5)),
        (Scenario::Upload, 1, 1.5, None),
        (Scenario::Upload, 4, 1.5, None),
    ] {
        let pair = find(s, "ringmover copy ⇄ ringmover", streams).zip(find(s, "guc ⇄ globus-gridftp-server", streams));
        let got = pair.map(|(a, b)| {
            (
                a.median.gbytes_per_s / b.median.gbytes_per_s,
                a.median.cpu_s_per_gb / b.median.cpu_s_per_gb,
            )
        });
        let mode = if streams == 1 {
            "stream mode".to_string()
        } else {
            format!("-p {streams}")
        };
        out.push(Target {
            what: format!("{}, {mode}, vs globus-url-copy ⇄ globus-gridftp-server", s.name()),
            want: match cpu_max {
                Some(c) => format!("≥ {want}× GB/s at ≤ {c}× CPU-s/GB"),
                None => format!("≥ {want}× GB/s"),
            },
            got: got.map_or("not measured".into(), |(t, c)| {
                format!("{t:.2}× GB/s, {c:.2}× CPU-s/GB")
            }),
            met: got.map(|(t, c)| t >= want && cpu_max.is_none_or(|m| c <= m)),
        });
    }
    for s in [Scenario::Download, Scenario::Upload] {
        for streams in [1, 4] {
            let Some(gsi) = find(s, super::files::GSI_OURS, streams) else {
                continue;
            };
            let ratio = |peer: &str| find(s, peer, streams).map(|p| gsi.median.gbytes_per_s / p.median.gbytes_per_s);
            let plain = ratio("ringmover copy ⇄ ringmover");
            out.push(Target {
                what: format!("{}, -p {streams}, gsiftp:// DCAU A + PROT C vs our ftp://", s.name()),
                want: "≥ 0.9× GB/s (only the handshakes cost)".into(),
                got: plain.map_or("not measured".into(), |r| format!("{r:.2}× GB/s")),
                met: plain.map(|r| r >= 0.9),
            });
            if let Some(p) = find(s, super::files::GSI_OURS_P, streams) {
                let vs =
                    find(s, super::files::GSI_GLOBUS_P, streams).map(|g| p.median.gbytes_per_s / g.median.gbytes_per_s);
                out.push(Target {
                    what: format!("{}, -p {streams}, gsiftp:// PROT P vs Globus -dcpriv", s.name()),
                    want: "≥ 1.5× GB/s".into(),
                    got: vs.map_or("not measured".into(), |r| format!("{r:.2}× GB/s")),
                    met: vs.map(|r| r >= 1.5),
                });
            }
            if let Some(r) = ratio(super::files::GSI_GLOBUS) {
                out.push(Target {
                    what: format!(
                        "{}, -p {streams}, gsiftp:// DCAU A + PROT C vs Globus with the same",
                        s.name()
                    ),
                    want: "(no target; for reference)".into(),
                    got: format!("{r:.2}× GB/s"),
                    met: None,
                });
            }
        }
    }
    for streams in [1, 4] {
        let ours = find(Scenario::Upload, "ringmover copy ⇄ ringmover", streams);
        let ceiling = find(Scenario::Upload, super::files::NEW_FILE_TOOL, streams);
        let globus = find(Scenario::Upload, "guc ⇄ globus-gridftp-server", streams);
        let of = |a: Option<&Case>| {
            a.zip(ceiling).map_or("-".to_string(), |(a, c)| {
                format!("{:.2}×", a.median.gbytes_per_s / c.median.gbytes_per_s)
            })
        };
        if ceiling.is_some() {
            out.push(Target {
                what: format!("upload, -p {streams}, vs writing a new file on the server's CPUs (dd)"),
                want: "(the ceiling; for reference)".into(),
                got: format!("ours {}, Globus {}", of(ours), of(globus)),
                met: None,
            });
        }
    }
    for s in [Scenario::DiskRead, Scenario::DiskWrite] {
        for streams in [1, 4] {
            let Some(ours) = find(s, super::files::DIRECT_TOOL, streams) else {
                continue;
            };
            let ratio = |peer: &str| find(s, peer, streams).map(|p| ours.median.gbytes_per_s / p.median.gbytes_per_s);
            let (fio, globus) = (ratio(super::files::FIO_TOOL), ratio("guc ⇄ globus-gridftp-server"));
            let show = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.2}×"));
            out.push(Target {
                what: format!("{}, -p {streams}, --direct-io vs fio and Globus", s.name()),
                want: "≥ 0.9× fio, ≥ 1.5× Globus".into(),
                got: format!("{} fio, {} Globus", show(fio), show(globus)),
                met: fio.zip(globus).map(|(f, g)| f >= 0.9 && g >= 1.5),
            });
        }
    }
    out
}

/// What the host's congestion control means for the file rows, when it paces inside TCP
/// (`paces`): the peers then pace on loopback and ringmover (`--congestion auto`) does not.
pub fn congestion_note(host_algorithm: &str, paces: bool) -> Option<String> {
    paces.then(|| {
        format!(
            "note: the host's TCP congestion control is {host_algorithm}, which paces inside TCP where no fq qdisc \
             does (loopback): iperf3 and Globus pace here; ringmover's file transfers between ends on one host \
             use cubic (--congestion auto), its m2m rows keep {host_algorithm}. To compare on the same footing: \
             sysctl -w net.ipv4.tcp_congestion_control=cubic\n"
        )
    })
}

pub fn targets_table(targets: &[Target]) -> String {
    let mut out = String::from("targets (medians of this run):\n");
    for t in targets {
        let mark = match t.met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "-",
        };
        let _ = writeln!(out, "  {:<70} want {:<32} got {:<34} {mark}", t.what, t.want, t.got);
    }
    out
}

/// The best point of each tool (highest median GB/s).
pub fn best(cases: &[Case]) -> String {
    let mut tools: Vec<&str> = Vec::new();
    for c in cases {
        if !tools.contains(&c.tool.as_str()) {
            tools.push(&c.tool);
        }
    }
    let mut out = String::from("best settings:\n");
    for t in tools {
        if let Some(c) = cases
            .iter()
            .filter(|c| c.tool == t)
            .max_by(|a, b| a.median.gbytes_per_s.total_cmp(&b.median.gbytes_per_s))
        {
            let _ = writeln!(
                out,
                "  {:<30} {:<30} {:.3} GB/s ({:.0} Mbit/s)",
                t,
                c.label(),
                c.median.gbytes_per_s,
                c.median.gbytes_per_s * 8e3
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{Case, Point, Sample};
    use crate::engine::DataPath;

    fn case(s: Scenario, tool: &str, streams: u32, gbps: f64, cpu: f64) -> Case {
        let point = Point {
            streams,
            block_size: None,
            tcp_bs: None,
            path: DataPath::Auto,
        };
        let sample = Sample {
            gbytes_per_s: gbps,
            cpu_s_per_gb: cpu,
            client_cpu_s_per_gb: None,
            server_cpu_s_per_gb: None,
        };
        Case::new(s, tool, point, vec![sample])
    }

    #[test]
    fn ratios_and_targets() {
        let cases = vec![
            case(Scenario::M2m, M2M_SENDFILE, 1, 9.0, 0.2),
            case(Scenario::M2m, "iperf3", 1, 4.0, 0.4),
            case(Scenario::M2m, "iperf3 -Z", 1, 6.0, 0.3),
            case(Scenario::Download, "ringmover copy ⇄ ringmover", 1, 5.0, 0.2),
            case(Scenario::Download, "guc ⇄ globus-gridftp-server", 1, 2.0, 0.6),
        ];
        let (t, c) = ratios(&cases, &cases[0]).unwrap();
        assert!((t - 2.25).abs() < 1e-9 && (c - 0.5).abs() < 1e-9);
        let got = targets(&cases);
        assert_eq!(got[0].met, Some(true)); // 9 vs max(4, 6) = 1.5x, at 0.5x iperf3's CPU
        assert_eq!(got[1].met, None); // the send row was not measured
        assert_eq!(got[2].met, Some(true)); // 2.5x at 0.33x CPU
        assert_eq!(got[3].met, None); // -p 4 not measured
        let svg = svg(&cases);
        assert!(svg.starts_with("<svg") && svg.contains("m2m"), "{svg:.300}");
        for tool in ["iperf3 -Z", "guc ⇄ globus-gridftp-server", M2M_SENDFILE] {
            assert!(svg.contains(tool), "{tool} missing from the legend");
        }
        let mut out = Vec::new();
        csv(&cases, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 6);
        assert_eq!(crate::bench::human(4 << 20), "4M");
    }

    #[test]
    fn the_note_names_a_pacing_host_algorithm_only() {
        assert!(congestion_note("bbr", true).is_some_and(|n| n.contains("bbr") && n.contains("cubic")));
        assert!(congestion_note("cubic", false).is_none());
    }
}
