//! The outputs of a run in `--out DIR`: `history.jsonl`, `report.md` (the
//! nemesis timeline, latency and errors around each fault) and
//! `timeline.html` (a self-contained SVG plot); plus the one-line JSON
//! summary on stdout.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::history::{Kind, Op, Status};
use crate::nemesis::Event;

/// The final line on stdout.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub seed: u64,
    pub ops: usize,
    pub ok: usize,
    pub unknown: usize,
    pub failed: usize,
    pub linearizable: bool,
    pub lost: usize,
    pub duplicated: usize,
    pub phantom: usize,
    pub replicas_equal: bool,
    pub stale_ok: bool,
    pub unchecked_registers: usize,
    pub faults: usize,
    /// The healed cluster elected a leader and answered the final read.
    pub available_after_heal: bool,
    pub nodes: usize,
    /// The node id each slot runs at the end (1..=nodes unless the
    /// membership nemesis replaced some).
    pub node_ids: Vec<u64>,
    pub backend: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub break_mode: Option<String>,
    pub applied_index: u64,
}

impl Summary {
    /// Whether the run found nothing wrong.
    pub fn passed(&self) -> bool {
        self.linearizable
            && self.lost == 0
            && self.duplicated == 0
            && self.phantom == 0
            && self.replicas_equal
            && self.stale_ok
            && self.available_after_heal
    }
}

pub fn write_history(out: &Path, ops: &[Op]) -> std::io::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(out.join("history.jsonl"))?);
    for op in ops {
        serde_json::to_writer(&mut file, op)?;
        file.write_all(b"\n")?;
    }
    file.flush()
}

/// Latency percentiles (ms) and counts of the ops invoked in [from, to).
fn window(ops: &[Op], from: u64, to: u64) -> String {
    let inside: Vec<&Op> = ops
        .iter()
        .filter(|o| o.invoked_us >= from && o.invoked_us < to && o.kind != Kind::StaleRead)
        .collect();
    let count = |s| inside.iter().filter(|o| o.status == s).count();
    let mut ok: Vec<u64> = inside
        .iter()
        .filter(|o| o.status == Status::Ok)
        .map(|o| o.completed_us - o.invoked_us)
        .collect();
    ok.sort_unstable();
    let pct = |p: f64| {
        ok.get(((ok.len() as f64 - 1.0) * p).round() as usize)
            .map_or("-".to_string(), |v| format!("{:.1}", *v as f64 / 1000.0))
    };
    format!(
        "{} | {} | {} | {} | {} | {}",
        inside.len(),
        count(Status::Ok),
        count(Status::Unknown),
        count(Status::Fail),
        pct(0.5),
        pct(0.99)
    )
}

fn top_errors(ops: &[Op], from: u64, to: u64) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for o in ops
        .iter()
        .filter(|o| o.invoked_us >= from && o.invoked_us < to)
    {
        if let Some(e) = &o.error {
            let key: String = e.split(':').next().unwrap_or(e).to_string();
            *counts.entry(key).or_default() += 1;
        }
    }
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    v.iter()
        .take(3)
        .map(|(e, n)| format!("{e}×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn write_report(
    out: &Path,
    summary: &Summary,
    ops: &[Op],
    events: &[Event],
    findings: &[String],
) -> std::io::Result<()> {
    let mut md = String::new();
    let verdict = if summary.passed() { "PASS" } else { "FAIL" };
    let _ = writeln!(md, "# taskd-chaos: seed {} — {verdict}\n", summary.seed);
    let _ = writeln!(
        md,
        "{} nodes on {}, {} faults, break mode: {}. Replay: `taskd-chaos --seed {} …` with the same flags.\n",
        summary.nodes,
        summary.backend,
        summary.faults,
        summary.break_mode.as_deref().unwrap_or("none"),
        summary.seed
    );
    let _ = writeln!(
        md,
        "```json\n{}\n```\n",
        serde_json::to_string_pretty(summary).unwrap_or_default()
    );
    if !findings.is_empty() {
        let _ = writeln!(md, "## Findings\n");
        for f in findings.iter().take(50) {
            let _ = writeln!(md, "- {f}");
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "## Nemesis timeline\n");
    let _ = writeln!(
        md,
        "Ops counted by invocation time; latency of acknowledged ops in ms (STALE reads excluded).\n"
    );
    let _ = writeln!(
        md,
        "| window | fault | slots | detail | ops | ok | unknown | failed | p50 | p99 | errors |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
    let mut before = 0;
    for e in events {
        let s = |us: u64| format!("{:.1}s", us as f64 / 1e6);
        if e.start_us > before {
            let _ = writeln!(
                md,
                "| {}–{} | (healthy) | | | {} | {} |",
                s(before),
                s(e.start_us),
                window(ops, before, e.start_us),
                top_errors(ops, before, e.start_us)
            );
        }
        let end = e.end_us.max(e.start_us + 1);
        let _ = writeln!(
            md,
            "| {}–{} | **{}** | {:?} | {} | {} | {} |",
            s(e.start_us),
            s(e.end_us),
            e.what,
            e.targets,
            e.detail.replace('|', "/"),
            window(ops, e.start_us, end),
            top_errors(ops, e.start_us, end)
        );
        before = before.max(end);
    }
    let last = ops.iter().map(|o| o.completed_us).max().unwrap_or(0);
    if last > before {
        let _ = writeln!(
            md,
            "| {:.1}s–{:.1}s | (healthy) | | | {} | {} |",
            before as f64 / 1e6,
            last as f64 / 1e6,
            window(ops, before, last + 1),
            top_errors(ops, before, last + 1)
        );
    }
    std::fs::write(out.join("report.md"), md)
}

/// At most this many acknowledged ops are drawn (all others always are).
const MAX_DOTS: usize = 20_000;

/// One SVG: a lane per node, a dot per op (green ok, orange unknown, red
/// failed) at its invocation time, and a band per fault.
pub fn write_timeline(
    out: &Path,
    summary: &Summary,
    ops: &[Op],
    events: &[Event],
) -> std::io::Result<()> {
    let end_us = ops
        .iter()
        .map(|o| o.completed_us)
        .chain(events.iter().map(|e| e.end_us))
        .max()
        .unwrap_or(1)
        .max(1);
    let (width, lane, left, top) = (1400.0, 60.0, 70.0, 30.0);
    let lanes = summary.nodes;
    let height = top + lane * lanes as f64 + 40.0;
    let x = |us: u64| left + (width - left - 10.0) * us as f64 / end_us as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let palette = ["#c7d7f5", "#f5d0c7", "#d9f5c7", "#f0c7f5", "#f5ecc7"];
    for (i, e) in events.iter().enumerate() {
        let (x0, x1) = (x(e.start_us), x(e.end_us.max(e.start_us + 50_000)));
        let color = palette[i % palette.len()];
        let _ = write!(
            svg,
            r#"<rect x="{x0:.1}" y="{}" width="{:.1}" height="{}" fill="{color}"><title>{} {:?}: {}</title></rect><text x="{x0:.1}" y="12">{}</text>"#,
            top - 10.0,
            (x1 - x0).max(1.0),
            lane * lanes as f64 + 10.0,
            e.what,
            e.targets,
            html_escape(&e.detail),
            e.what
        );
    }
    // A lane per slot (namespace and address); the membership nemesis may
    // run several node ids in one slot over the run, each labelled.
    for k in 1..=lanes {
        let y = top + lane * (k as f64 - 0.5);
        let mut ids: Vec<u64> = ops
            .iter()
            .filter(|o| o.node == k && o.node_id != 0)
            .map(|o| o.node_id)
            .collect();
        ids.dedup();
        ids.sort_unstable();
        ids.dedup();
        let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
        let _ = write!(
            svg,
            r##"<text x="5" y="{:.1}">slot {k}</text><text x="5" y="{:.1}">id {}</text><line x1="{left}" x2="{width}" y1="{y:.1}" y2="{y:.1}" stroke="#ccc"/>"##,
            y - 6.0,
            y + 8.0,
            ids.join(",")
        );
    }
    // A long run has millions of ops: plot every failure and unknown, and
    // an even sample of the rest, so that the page stays small.
    let every = (ops.len() / MAX_DOTS).max(1);
    let plotted = ops
        .iter()
        .enumerate()
        .filter(|(i, o)| o.status != Status::Ok || i % every == 0);
    for (i, o) in plotted {
        let color = match o.status {
            Status::Ok => "#2a8d2a",
            Status::Unknown => "#e08a00",
            Status::Fail => "#c62828",
        };
        // Spread the dots of a lane vertically so that they do not pile up.
        let jitter = ((i * 7919) % 40) as f64 - 20.0;
        let y = top + lane * (o.node as f64 - 0.5) + jitter;
        let _ = write!(
            svg,
            r#"<circle cx="{:.1}" cy="{y:.1}" r="1.6" fill="{color}"/>"#,
            x(o.invoked_us)
        );
    }
    let axis_y = top + lane * lanes as f64 + 20.0;
    let secs = end_us / 1_000_000;
    let step = (secs / 15).max(1);
    for s in (0..=secs).step_by(step as usize) {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{axis_y}">{s}s</text>"#,
            x(s * 1_000_000)
        );
    }
    svg.push_str("</svg>");
    let verdict = if summary.passed() { "PASS" } else { "FAIL" };
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>taskd-chaos seed {seed}</title></head><body>\
         <h1>taskd-chaos seed {seed}: {verdict}</h1><p>{summary}</p>\
         <p>Dots: one per operation at its invocation, green ok, orange unknown, red failed. Bands: faults (hover for details).</p>{svg}</body></html>",
        seed = summary.seed,
        summary = html_escape(&serde_json::to_string(summary).unwrap_or_default()),
    );
    std::fs::write(out.join("timeline.html"), html)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
