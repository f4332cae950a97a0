//! `fairgate check`: the guard over a file of JSON lines, offline.
//!
//! One output line per input line, in order:
//! `{"route": "output"|"blocked"|"dead_letter", "key": ..., "headers": {...}, "value": ...}`
//! where `value` is the published decision (JSON) or, for dead letters, the
//! original line as a string. Time is event time unless `now_ms` is given, so
//! recorded traffic is judged as it was: read from the decisions' `ts`, robust
//! to outliers ([`crate::fairness::event_time`]); the first lines are read
//! ahead to prime it, so that a first decision stamped far ahead cannot set it.

use std::io::{BufRead, Write};

use serde::Serialize;

use crate::core::decision::Decision;
use crate::core::guard::{Guard, Judgement, Now, Route};
use crate::fairness::alert::AlertEvent;
use crate::fairness::event_time::RECENT;
use crate::fairness::tracker::CampaignReport;

/// Totals of one run.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Totals {
    pub lines: u64,
    pub output: u64,
    pub blocked: u64,
    pub dead_letter: u64,
    pub alerts: u64,
    pub late: u64,
    pub early: u64,
}

/// The `--report` document.
#[derive(Debug, Serialize)]
pub struct Report {
    pub policy_version: String,
    pub mode: &'static str,
    pub window_secs: i64,
    pub totals: Totals,
    pub campaigns: Vec<CampaignReport>,
}

/// Write one judgement as a JSON line.
pub fn write_line(out: &mut impl Write, j: &Judgement) -> std::io::Result<()> {
    #[derive(Serialize)]
    struct Head<'a> {
        route: Route,
        key: Option<std::borrow::Cow<'a, str>>,
        headers: serde_json::Map<String, serde_json::Value>,
    }
    let head = Head {
        route: j.route,
        key: j.key.as_deref().map(String::from_utf8_lossy),
        headers: j
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect(),
    };
    let mut head = serde_json::to_vec(&head)?;
    head.pop(); // the closing brace
    out.write_all(&head)?;
    out.write_all(b",\"value\":")?;
    if j.route == Route::DeadLetter {
        let s = String::from_utf8_lossy(&j.payload);
        serde_json::to_writer(&mut *out, &s)?;
    } else {
        out.write_all(&j.payload)?;
    }
    out.write_all(b"}\n")
}

/// Run the guard over `input`, writing judgements to `out` and alerts to `alerts`.
pub fn run(
    guard: &Guard,
    input: impl BufRead,
    out: &mut impl Write,
    mut alerts: Option<&mut dyn Write>,
    now_ms: Option<i64>,
) -> std::io::Result<Totals> {
    let mut t = Totals::default();
    let now = now_ms.map(Now::At).unwrap_or(Now::EventTime);
    let mut lines = input.split(b'\n');
    let ahead = match now {
        Now::EventTime => read_ahead(&[guard], &mut lines),
        Now::At(_) => Vec::new(),
    };
    for line in ahead.into_iter().chain(lines) {
        let mut line = line?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        t.lines += 1;
        let j = guard.judge(None, &line, now);
        match j.route {
            Route::Output => t.output += 1,
            Route::Blocked => t.blocked += 1,
            Route::DeadLetter => t.dead_letter += 1,
        }
        write_line(out, &j)?;
        if let Some(a) = &j.alert {
            t.alerts += 1;
            if let Some(w) = alerts.as_deref_mut() {
                write_alert(w, a)?;
            }
        }
    }
    let c = &guard.tracker().counters;
    t.late = c.late.load(std::sync::atomic::Ordering::Relaxed);
    t.early = c.early.load(std::sync::atomic::Ordering::Relaxed);
    out.flush()?;
    Ok(t)
}

/// Lines read ahead to prime event time with, at most.
const READ_AHEAD_LINES: usize = 64;

/// Read the first lines ahead, until [`RECENT`] of them are decisions (or
/// [`READ_AHEAD_LINES`] are read), and prime the guards' event time with
/// their `ts`. Returns the lines read, to be judged first.
pub fn read_ahead(
    guards: &[&Guard],
    lines: &mut impl Iterator<Item = std::io::Result<Vec<u8>>>,
) -> Vec<std::io::Result<Vec<u8>>> {
    let (mut ahead, mut primed) = (Vec::new(), 0);
    while primed < RECENT && ahead.len() < READ_AHEAD_LINES {
        let Some(line) = lines.next() else { break };
        if let Ok(l) = &line {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            if let Ok(d) = Decision::parse(l) {
                for g in guards {
                    g.prime_event_time(d.ts);
                }
                primed += 1;
            }
        }
        let failed = line.is_err();
        ahead.push(line);
        if failed {
            break;
        }
    }
    ahead
}

/// Write one alert as a JSON line.
pub fn write_alert(w: &mut dyn Write, a: &AlertEvent) -> std::io::Result<()> {
    serde_json::to_writer(&mut *w, a)?;
    w.write_all(b"\n")
}

/// Build the `--report` document.
pub fn report(guard: &Guard, totals: Totals) -> Report {
    let live = guard.live();
    Report {
        policy_version: live.policy.version.clone(),
        mode: live.policy.mode.as_str(),
        window_secs: live.policy.window_ms / 1000,
        totals,
        campaigns: guard.campaigns(None),
    }
}
