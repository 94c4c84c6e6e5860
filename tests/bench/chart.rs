//! The charts of a run: one SVG line chart per series (memory, CPU and calls against pods on
//! the node, threads; start latency under load; requests per node against nodes), drawn with plotters
//! next to the JSON report, with the targets and the kubelet's reference as flat grey lines.
//!
//! Owns the drawing; the figures come from the report's JSON, so a chart can be redrawn from
//! a saved report (`bench --charts-from <json>`).

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde_json::Value;

/// One line: a name for the legend and its points; `reference` lines (a target, the kubelet)
/// are drawn flat and grey.
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub reference: bool,
}

pub struct Chart {
    pub file: &'static str,
    pub title: String,
    pub x: &'static str,
    pub y: &'static str,
    pub lines: Vec<Line>,
}

const PALETTE: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
];
const GREY: RGBColor = RGBColor(150, 150, 150);

impl Chart {
    /// Draws the chart into `path` (SVG).
    pub fn draw(&self, path: &Path) -> Result<(), String> {
        let err = |e: &dyn std::fmt::Display| format!("chart {}: {e}", path.display());
        let pts = self.lines.iter().flat_map(|l| l.points.iter());
        let (mut xmax, mut ymax) = (0.0f64, 0.0f64);
        for (x, y) in pts {
            if x.is_finite() {
                xmax = xmax.max(*x);
            }
            if y.is_finite() {
                ymax = ymax.max(*y);
            }
        }
        let (xmax, ymax) = (nice(xmax.max(1.0)), nice(ymax * 1.1).max(f64::MIN_POSITIVE));
        let root = SVGBackend::new(path, (760, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, ("sans-serif", 20))
            .margin(14)
            .x_label_area_size(42)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..xmax, 0f64..ymax)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc(self.x)
            .y_desc(self.y)
            .light_line_style(RGBColor(235, 235, 235))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| {
                let digits = match ymax {
                    m if m >= 10.0 => 0,
                    m if m >= 1.0 => 1,
                    m if m >= 0.1 => 2,
                    _ => 3,
                };
                format!("{y:.digits$}")
            })
            .draw()
            .map_err(|e| err(&e))?;
        let mut colour = PALETTE.iter().cycle();
        for line in &self.lines {
            let points: Vec<(f64, f64)> = line
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            let c = if line.reference {
                GREY
            } else {
                *colour.next().unwrap_or(&PALETTE[0])
            };
            let style = c.stroke_width(if line.reference { 1 } else { 2 });
            chart
                .draw_series(LineSeries::new(points.clone(), style))
                .map_err(|e| err(&e))?
                .label(line.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            if !line.reference {
                chart
                    .draw_series(points.iter().map(|p| Circle::new(*p, 3, c.filled())))
                    .map_err(|e| err(&e))?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(GREY)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))
    }
}

/// The next round number up (1, 2, 2.5, 5 × 10^k).
fn nice(x: f64) -> f64 {
    if !x.is_finite() || x <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(x.log10().floor());
    let m = x / p;
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .find(|s| m <= *s + 1e-9)
        .unwrap_or(10.0);
    step * p
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn line(name: &str, points: Vec<(f64, f64)>) -> Line {
    Line {
        name: name.to_string(),
        points,
        reference: false,
    }
}

fn flat(name: &str, xmax: f64, y: f64) -> Line {
    Line {
        name: name.to_string(),
        points: vec![(0.0, y), (xmax, y)],
        reference: true,
    }
}

/// The charts a report has figures for.
pub fn charts(report: &Value) -> Vec<Chart> {
    let mut out = Vec::new();
    let levels = report["scale"]["levels"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !levels.is_empty() {
        let xs = |key: &dyn Fn(&Value) -> f64| -> Vec<(f64, f64)> {
            levels.iter().map(|l| (f(&l["pods"]), key(l))).collect()
        };
        let xmax = levels.iter().map(|l| f(&l["pods"])).fold(0.0, f64::max);
        out.push(Chart {
            file: "scale-memory",
            title: "vk-cri RSS against idle pods on the node".into(),
            x: "pods on the node",
            y: "MiB",
            lines: vec![
                line(
                    "RSS (max over the period)",
                    xs(&|l| f(&l["idle"]["rss_max_mib"])),
                ),
                line(
                    "anonymous (heap, stacks)",
                    xs(&|l| f(&l["idle"]["rss_anon_mib"])),
                ),
                line(
                    "file (the binary's pages)",
                    xs(&|l| f(&l["idle"]["rss_file_mib"])),
                ),
                flat("target at 500 pods: 20 MiB", xmax, 20.0),
            ],
        });
        out.push(Chart {
            file: "scale-cpu",
            title: "vk-cri CPU against idle pods on the node".into(),
            x: "pods on the node",
            y: "% of one core",
            lines: vec![
                line("CPU", xs(&|l| f(&l["idle"]["cpu_pct_of_one_core"]))),
                flat("target at 500 pods: 1 %", xmax, 1.0),
            ],
        });
        out.push(Chart {
            file: "scale-calls",
            title: "vk-cri calls while idle, against pods on the node".into(),
            x: "pods on the node",
            y: "per second",
            lines: vec![
                line("CRI calls/s", xs(&|l| f(&l["idle"]["cri_calls_per_s"]))),
                line(
                    "API requests/s",
                    xs(&|l| f(&l["idle"]["api_requests_per_s"])),
                ),
            ],
        });
        out.push(Chart {
            file: "scale-threads",
            title: "vk-cri threads against idle pods on the node".into(),
            x: "pods on the node",
            y: "threads",
            lines: vec![line("threads", xs(&|l| f(&l["idle"]["threads"])))],
        });
        let lat = |side: &'static str, p: &'static str| {
            move |l: &Value| f(&l["start_under_load"][side][p])
        };
        out.push(Chart {
            file: "scale-start",
            title: "Pod start, one at a time, against pods on the node".into(),
            x: "pods on the node",
            y: "ms",
            lines: vec![
                line("vk-cri p50", xs(&lat("vk_cri", "p50_ms"))),
                line("vk-cri p99", xs(&lat("vk_cri", "p99_ms"))),
                line("CRI floor p50", xs(&lat("floor", "p50_ms"))),
                line("CRI floor p99", xs(&lat("floor", "p99_ms"))),
            ],
        });
    }
    let nodes = report["nodes"]["runs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !nodes.is_empty() {
        let xmax = nodes.iter().map(|n| f(&n["nodes"])).fold(0.0, f64::max);
        let per = |key: &'static str| -> Vec<(f64, f64)> {
            nodes
                .iter()
                .map(|n| (f(&n["nodes"]), f(&n["per_node"][key])))
                .collect()
        };
        out.push(Chart {
            file: "nodes-requests",
            title: "API requests per node against nodes on one API server".into(),
            x: "vk-cri nodes",
            y: "requests/s per node",
            lines: vec![
                line("vk-cri, with its watch restarts", per("requests_per_s")),
                line(
                    "vk-cri, in the measured window",
                    per("requests_per_s_in_window"),
                ),
                flat(
                    "kubelet defaults (lease + node GET every 10 s, …)",
                    xmax,
                    f(&report["nodes"]["kubelet_reference"]["requests_per_s"]),
                ),
            ],
        });
    }
    out
}

/// Draws every chart of `report` next to `json` (`<stem>-<chart>.svg`); returns the files.
pub fn write_all(report: &Value, json: &Path) -> Result<Vec<PathBuf>, String> {
    let stem = json
        .file_stem()
        .map_or_else(|| "bench".into(), |s| s.to_string_lossy().into_owned());
    let dir = json.parent().unwrap_or(Path::new("."));
    let mut files = Vec::new();
    for c in charts(report) {
        let path = dir.join(format!("{stem}-{}.svg", c.file));
        c.draw(&path)?;
        files.push(path);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice(0.37), 0.5);
        assert_eq!(nice(12.0), 20.0);
        assert_eq!(nice(500.0), 500.0);
        assert_eq!(nice(501.0), 1000.0);
        assert_eq!(nice(0.0), 1.0);
    }

    #[test]
    fn a_report_gives_its_charts_as_svg() {
        let idle = |pods: u32, rss: f64| {
            json!({"pods": pods, "idle": {"rss_max_mib": rss, "rss_anon_mib": rss / 2.0,
                "rss_file_mib": rss / 2.0, "cpu_pct_of_one_core": 0.2, "cri_calls_per_s": 2.2,
                "api_requests_per_s": 0.2, "threads": 20},
                "start_under_load": {"vk_cri": {"p50_ms": 120.0, "p99_ms": 150.0},
                    "floor": {"p50_ms": 110.0, "p99_ms": 140.0}}})
        };
        let report = json!({
            "scale": {"levels": [idle(0, 6.0), idle(100, 10.0), idle(500, 14.0)]},
            "nodes": {"runs": [{"nodes": 1, "per_node": {"requests_per_s": 0.21,
                "requests_per_s_in_window": 0.2}}],
                "kubelet_reference": {"requests_per_s": 0.214}},
        });
        let dir = std::env::temp_dir().join(format!("vk-cri-chart-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let files = write_all(&report, &dir.join("run.json")).expect("charts");
        let names: Vec<String> = files
            .iter()
            .map(|f| {
                f.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(
            names,
            [
                "run-scale-memory.svg",
                "run-scale-cpu.svg",
                "run-scale-calls.svg",
                "run-scale-threads.svg",
                "run-scale-start.svg",
                "run-nodes-requests.svg"
            ]
        );
        let svg = std::fs::read_to_string(&files[0]).expect("read");
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("anonymous (heap, stacks)"));
        assert!(svg.contains("<polyline") || svg.contains("<path"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
