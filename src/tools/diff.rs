//! `fairgate diff`: recorded traffic judged under the current policy and a
//! candidate in one pass, and what the candidate would change, as a JSON
//! document and a self-contained HTML page.
//!
//! Each line is judged by two guards, one per policy, each with its own
//! campaign windows and states, each on a thread of its own and in input
//! order: the per-campaign states are exact, as `fairgate check` would give
//! them under each policy. (Splitting further, by campaign, would not be:
//! the share-distance baseline is the platform-wide mix of every campaign.) Time is
//! the decisions' own (event time, primed by reading the first lines ahead,
//! as `check` does) unless `now_ms` is given. The comparison itself is pure
//! ([`crate::core::diff`]); this module reads, runs and writes. Nothing in
//! the report is a value from the input but decision and campaign ids.

use std::fmt::Write as _;
use std::io::BufRead;
use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::core::diff::{Both, CampaignDiff, CampaignSide, KindReport, Tally, Totals};
use crate::core::guard::{Guard, Judgement, Now};
use crate::tools::check::read_ahead;

/// Which policy, as the report names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyInfo {
    pub version: String,
    pub mode: &'static str,
    pub window_secs: i64,
}

impl PolicyInfo {
    fn of(g: &Guard) -> PolicyInfo {
        let live = g.live();
        PolicyInfo {
            version: live.policy.version.clone(),
            mode: live.policy.mode.as_str(),
            window_secs: live.policy.window_ms / 1000,
        }
    }
}

/// The format name and version of the JSON document.
pub const FORMAT: &str = "fairgate-diff/1";

/// The `fairgate diff` document (README "What-if: fairgate diff").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiffReport {
    pub format: &'static str,
    pub current: PolicyInfo,
    pub candidate: PolicyInfo,
    /// The clock given with `--now-ms`; none: event time.
    pub now_ms: Option<i64>,
    pub examples_per_kind: usize,
    pub totals: Totals,
    /// Every kind of change, in a fixed order, zero counts included.
    pub changes: Vec<KindReport>,
    /// Every campaign seen, by id.
    pub campaigns: Vec<CampaignDiff>,
}

/// Judge every line of `input` under both guards and tally the differences.
pub fn run(
    current: &Guard,
    candidate: &Guard,
    input: impl BufRead,
    now_ms: Option<i64>,
    examples: usize,
) -> std::io::Result<DiffReport> {
    let lines = input.split(b'\n').map(|l| {
        l.map(|mut l| {
            if l.last() == Some(&b'\r') {
                l.pop();
            }
            l
        })
    });
    run_lines(current, candidate, lines, now_ms, examples)
}

/// [`run`] over decisions given one by one (the lines of a file, the
/// records of a topic): each item is one decision's bytes; an error stops
/// the replay and is returned.
pub fn run_lines(
    current: &Guard,
    candidate: &Guard,
    lines: impl Iterator<Item = std::io::Result<Vec<u8>>>,
    now_ms: Option<i64>,
    examples: usize,
) -> std::io::Result<DiffReport> {
    let now = now_ms.map(Now::At).unwrap_or(Now::EventTime);
    let mut lines = lines;
    let ahead = match now {
        Now::EventTime => read_ahead(&[current, candidate], &mut lines),
        Now::At(_) => Vec::new(),
    };
    let mut tally = Tally::new(examples);
    judge_both(
        current,
        candidate,
        ahead.into_iter().chain(lines),
        now,
        &mut tally,
    )?;
    let counter = |g: &Guard, late: bool| {
        let c = &g.tracker().counters;
        if late { &c.late } else { &c.early }.load(Ordering::Relaxed)
    };
    let late = Both {
        current: counter(current, true),
        candidate: counter(candidate, true),
    };
    let early = Both {
        current: counter(current, false),
        candidate: counter(candidate, false),
    };
    let (totals, changes, campaigns) = tally.finish(
        &current.campaigns(None),
        &candidate.campaigns(None),
        late,
        early,
    );
    Ok(DiffReport {
        format: FORMAT,
        current: PolicyInfo::of(current),
        candidate: PolicyInfo::of(candidate),
        now_ms,
        examples_per_kind: examples,
        totals,
        changes,
        campaigns,
    })
}

/// Lines handed to the two judging threads at a time.
const BATCH_LINES: usize = 1024;
/// Batches in flight, at most (each thread's queues are one longer: no send ever waits on a
/// queue this thread has yet to empty).
const BATCHES_IN_FLIGHT: usize = 4;

type Batch = std::sync::Arc<Vec<Vec<u8>>>;

/// Judge every line under both guards, each guard on a thread of its own
/// (in input order: each guard's campaign states are exactly a sequential
/// run's), and tally the pairs in input order on this thread.
fn judge_both(
    current: &Guard,
    candidate: &Guard,
    lines: impl Iterator<Item = std::io::Result<Vec<u8>>>,
    now: Now,
    tally: &mut Tally,
) -> std::io::Result<()> {
    use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
    fn worker(g: &Guard, now: Now, rx: Receiver<Batch>, tx: SyncSender<Vec<Judgement>>) {
        for batch in rx {
            let judged = batch.iter().map(|l| g.judge(None, l, now)).collect();
            if tx.send(judged).is_err() {
                return;
            }
        }
    }
    std::thread::scope(|s| {
        let depth = BATCHES_IN_FLIGHT + 1;
        let (to_a, from_main_a) = sync_channel::<Batch>(depth);
        let (to_b, from_main_b) = sync_channel::<Batch>(depth);
        let (done_a, judged_a) = sync_channel(depth);
        let (done_b, judged_b) = sync_channel(depth);
        s.spawn(move || worker(current, now, from_main_a, done_a));
        s.spawn(move || worker(candidate, now, from_main_b, done_b));
        let mut in_flight = 0usize;
        let take = |tally: &mut Tally| -> bool {
            match (judged_a.recv(), judged_b.recv()) {
                (Ok(a), Ok(b)) => {
                    for (a, b) in a.iter().zip(&b) {
                        tally.add(a, b);
                    }
                    true
                }
                _ => false,
            }
        };
        let mut lines = lines.peekable();
        let mut failed = None;
        while lines.peek().is_some() {
            let mut batch = Vec::with_capacity(BATCH_LINES);
            for line in lines.by_ref().take(BATCH_LINES) {
                match line {
                    Ok(l) => batch.push(l),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            let batch = std::sync::Arc::new(batch);
            if to_a.send(batch.clone()).is_err() || to_b.send(batch).is_err() {
                break;
            }
            in_flight += 1;
            if in_flight > BATCHES_IN_FLIGHT && take(tally) {
                in_flight -= 1;
            }
            if failed.is_some() {
                break;
            }
        }
        drop((to_a, to_b));
        while in_flight > 0 && take(tally) {
            in_flight -= 1;
        }
        failed.map_or(Ok(()), Err)
    })
}

/// The JSON document, pretty-printed, with a final newline.
pub fn to_json(r: &DiffReport) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(r).expect("the report serialises");
    v.push(b'\n');
    v
}

/// `s` escaped for HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Campaign rows shown in the HTML page (every one is in the JSON).
pub const HTML_MAX_CAMPAIGNS: usize = 500;
/// Campaigns drawn in the chart.
pub const CHART_MAX_CAMPAIGNS: usize = 60;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em}\
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.flip{background:#fff3cd}code{font-size:12px}.cur{fill:#4e79a7}.cand{fill:#f28e2b}";

/// The HTML page: tables of totals, changes and campaigns, and a chart of
/// per-campaign measures under both policies. No external assets; every
/// string from the input or the policies is escaped.
pub fn to_html(r: &DiffReport) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let title = format!(
        "fairgate diff: {} → {}",
        r.current.version, r.candidate.version
    );
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    let clock = match r.now_ms {
        Some(ms) => format!("clock fixed at {ms} ms"),
        None => "event time (the decisions' own ts)".to_string(),
    };
    let _ = writeln!(
        h,
        "<p>Current policy <b>{}</b> ({} mode, {} s window); candidate <b>{}</b> \
         ({} mode, {} s window); {}.</p>",
        escape(&r.current.version),
        r.current.mode,
        r.current.window_secs,
        escape(&r.candidate.version),
        r.candidate.mode,
        r.candidate.window_secs,
        escape(&clock)
    );
    totals_html(&mut h, &r.totals);
    changes_html(&mut h, &r.changes);
    chart_svg(&mut h, &r.campaigns);
    campaigns_html(&mut h, &r.campaigns);
    h.push_str("</body></html>\n");
    h
}

/// The cells of a row whose opening (`<tr>` and any header cells) is written.
fn row(h: &mut String, cells: &[String]) {
    for c in cells {
        let _ = write!(h, "<td class=\"n\">{c}</td>");
    }
    h.push_str("</tr>\n");
}

fn totals_html(h: &mut String, t: &Totals) {
    h.push_str("<h2>Totals</h2>\n<table><tr><th></th><th>current</th><th>candidate</th><th>difference</th></tr>\n");
    let both = |h: &mut String, name: &str, b: Both| {
        let d = b.candidate as i64 - b.current as i64;
        let _ = write!(h, "<tr><th>{name}</th>");
        row(
            h,
            &[
                b.current.to_string(),
                b.candidate.to_string(),
                format!("{d:+}"),
            ],
        );
    };
    let of = |d: crate::core::diff::Delta| Both {
        current: d.current,
        candidate: d.candidate,
    };
    both(h, "reach output", of(t.output));
    both(h, "blocked", of(t.blocked));
    both(h, "dead letter", t.dead_letter);
    both(h, "alerts", t.alerts);
    both(h, "late", t.late);
    both(h, "early", t.early);
    h.push_str("</table>\n<table>\n");
    for (name, n) in [
        ("input lines", t.lines),
        ("decisions changed (any kind)", t.changed),
        (
            "published record differs (topic or value bytes)",
            t.published_differs,
        ),
        ("campaigns whose state at the end differs", t.flips),
    ] {
        let _ = write!(h, "<tr><th>{name}</th>");
        row(h, &[n.to_string()]);
    }
    h.push_str("</table>\n");
}

fn changes_html(h: &mut String, changes: &[KindReport]) {
    h.push_str(
        "<h2>Changes by kind</h2>\n<table><tr><th>kind</th><th>decisions</th>\
         <th>current → candidate</th><th>example decision ids</th></tr>\n",
    );
    for k in changes {
        let mut detail = String::new();
        for t in &k.transitions {
            let _ = write!(
                detail,
                "{} → {}: {}<br>",
                escape(&t.from),
                escape(&t.to),
                t.count
            );
        }
        for p in &k.pointers {
            let _ = write!(
                detail,
                "<code>{}</code>: only current {}, only candidate {}<br>",
                escape(&p.pointer),
                p.current_only,
                p.candidate_only
            );
        }
        let examples: Vec<String> = k
            .examples
            .iter()
            .map(|e| format!("<code>{}</code>", escape(e)))
            .collect();
        let _ = writeln!(
            h,
            "<tr><th>{}</th><td class=\"n\">{}</td><td>{detail}</td><td>{}</td></tr>",
            k.kind.as_str(),
            k.count,
            examples.join(" ")
        );
    }
    h.push_str("</table>\n");
}

/// The lowest ratio's upper bound and the largest distance's lower bound over the dimensions.
fn worst(s: Option<&CampaignSide>) -> (Option<f64>, Option<f64>) {
    let Some(s) = s else { return (None, None) };
    let ratio = s
        .measures
        .iter()
        .filter_map(|m| m.selection_rate_ratio_upper)
        .reduce(f64::min);
    let distance = s
        .measures
        .iter()
        .filter_map(|m| m.share_distance_lower)
        .reduce(f64::max);
    (ratio, distance)
}

fn num(x: Option<f64>) -> String {
    x.map_or("–".to_string(), |x| format!("{x:.3}"))
}

fn campaigns_html(h: &mut String, campaigns: &[CampaignDiff]) {
    let _ = writeln!(
        h,
        "<h2>Campaigns</h2>\n<p>{} campaign(s){}. Measures: the lowest selection-rate \
         ratio's upper bound and the largest share distance's lower bound over the dimensions.</p>",
        campaigns.len(),
        if campaigns.len() > HTML_MAX_CAMPAIGNS {
            format!(", the first {HTML_MAX_CAMPAIGNS} shown (all are in the JSON)")
        } else {
            String::new()
        }
    );
    h.push_str(
        "<table><tr><th>campaign</th><th>category</th><th>decisions</th><th>changed</th>\
         <th>state current</th><th>state candidate</th><th>flip since (ts ms, decision)</th>\
         <th>ratio current</th><th>ratio candidate</th><th>distance current</th>\
         <th>distance candidate</th><th>stretches of disagreement</th></tr>\n",
    );
    let state = |s: Option<&CampaignSide>| s.map_or("–", |s| s.state.as_str());
    for c in campaigns.iter().take(HTML_MAX_CAMPAIGNS) {
        let (rc, dc) = worst(c.current.as_ref());
        let (rn, dn) = worst(c.candidate.as_ref());
        let since = c.flip.as_ref().map_or(String::new(), |f| {
            format!(
                "{} → {} since {} (<code>{}</code>)",
                f.from.as_str(),
                f.to.as_str(),
                f.since_ts_ms,
                escape(&f.since_decision)
            )
        });
        let _ = write!(
            h,
            "<tr{}><th>{}</th><td>{}</td>",
            if c.flip.is_some() {
                " class=\"flip\""
            } else {
                ""
            },
            escape(&c.campaign),
            escape(&c.category)
        );
        row(
            h,
            &[
                c.decisions.to_string(),
                c.changed.to_string(),
                state(c.current.as_ref()).to_string(),
                state(c.candidate.as_ref()).to_string(),
                since,
                num(rc),
                num(rn),
                num(dc),
                num(dn),
                c.divergences.len().to_string(),
            ],
        );
    }
    h.push_str("</table>\n");
}

/// The chart: per campaign, its measures under both policies as pairs of bars.
fn chart_svg(h: &mut String, campaigns: &[CampaignDiff]) {
    let shown: Vec<&CampaignDiff> = campaigns
        .iter()
        .filter(|c| c.flip.is_some())
        .chain(campaigns.iter().filter(|c| c.flip.is_none()))
        .take(CHART_MAX_CAMPAIGNS)
        .collect();
    let _ = writeln!(
        h,
        "<h2>Measures under both policies</h2>\n<p>Per campaign (flipped first; at most \
         {CHART_MAX_CAMPAIGNS}): left, the lowest selection-rate ratio's upper bound (0 to 1); \
         right, the largest share distance's lower bound (0 to 0.5). \
         <svg width=\"12\" height=\"10\"><rect class=\"cur\" width=\"12\" height=\"10\"/></svg> current \
         <svg width=\"12\" height=\"10\"><rect class=\"cand\" width=\"12\" height=\"10\"/></svg> candidate</p>"
    );
    let (label_w, bar_w, gap, row_h) = (170.0, 300.0, 30.0, 22.0);
    let width = label_w + 2.0 * bar_w + gap + 20.0;
    let height = 30.0 + row_h * shown.len() as f64;
    let _ = writeln!(
        h,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         role=\"img\" aria-label=\"per-campaign measures under both policies\">"
    );
    let x_ratio = label_w;
    let x_dist = label_w + bar_w + gap;
    let _ = writeln!(
        h,
        "<text x=\"{x_ratio}\" y=\"14\" font-size=\"12\">selection-rate ratio (upper bound)</text>\
         <text x=\"{x_dist}\" y=\"14\" font-size=\"12\">share distance (lower bound)</text>"
    );
    for (i, c) in shown.iter().enumerate() {
        let y = 24.0 + row_h * i as f64;
        let _ = writeln!(
            h,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}{}</text>",
            label_w - 6.0,
            y + 13.0,
            escape(&c.campaign),
            if c.flip.is_some() { " *" } else { "" }
        );
        let sides = [
            (worst(c.current.as_ref()), "cur", 0.0),
            (worst(c.candidate.as_ref()), "cand", 9.0),
        ];
        for ((ratio, distance), class, dy) in sides {
            for (x0, value, full) in [(x_ratio, ratio, 1.0), (x_dist, distance, 0.5)] {
                let Some(v) = value else { continue };
                let w = (v / full).clamp(0.0, 1.0) * bar_w;
                let _ = writeln!(
                    h,
                    "<rect class=\"{class}\" x=\"{x0}\" y=\"{}\" width=\"{w:.1}\" height=\"8\">\
                     <title>{} {class}: {v:.3}</title></rect>",
                    y + dy,
                    escape(&c.campaign)
                );
            }
        }
    }
    let _ = writeln!(
        h,
        "<line x1=\"{x_ratio}\" y1=\"20\" x2=\"{x_ratio}\" y2=\"{height}\" stroke=\"#999\"/>\
         <line x1=\"{x_dist}\" y1=\"20\" x2=\"{x_dist}\" y2=\"{height}\" stroke=\"#999\"/></svg>"
    );
}
