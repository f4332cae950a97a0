//! The status page a campaign manager opens: plain server-rendered HTML,
//! blocked and flagged campaigns first, with the numbers behind each state.

use crate::fairness::assess::Measure;
use crate::fairness::campaign::State as CampaignState;
use crate::fairness::tracker::CampaignReport;

/// Campaigns shown per state on the page: all blocked and flagged ones up
/// to this many, each with its numbers.
pub const SHOWN_NOT_OK: usize = 500;
/// Campaigns in state ok shown (the page says how many more there are).
pub const SHOWN_OK: usize = 50;

/// One state's part of the page: how many campaigns are in it, and the first
/// of them by id.
pub struct Section {
    pub state: CampaignState,
    pub total: usize,
    pub campaigns: Vec<CampaignReport>,
}

/// The shadow policy's view of the campaigns shown, while shadow is on.
pub struct ShadowStates {
    pub version: String,
    /// State under the shadow policy, by campaign id (absent: not tracked there).
    pub states: std::collections::HashMap<String, CampaignState>,
}

/// The status page: blocked, then flagged, then ok campaigns, each with the
/// numbers behind its state (and its state under the shadow policy, while
/// shadow is on); a bounded number per state.
pub fn render(
    version: &str,
    mode: &str,
    ready: bool,
    sections: &[Section],
    shadow: Option<&ShadowStates>,
) -> String {
    use std::fmt::Write;
    let mut page = String::with_capacity(16 * 1024);
    let tracked: usize = sections.iter().map(|s| s.total).sum();
    let _ = write!(
        page,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\"><title>fairgate — status</title><style>{CSS}</style></head><body><header><h1>fairgate</h1><p>Policy <b>{}</b> ({} mode) · {} campaigns tracked · ready: {}</p></header>",
        esc(version),
        mode,
        tracked,
        if ready { "yes" } else { "no" }
    );
    if let Some(sh) = shadow {
        let _ = write!(
            page,
            "<p>Shadow policy <b>{}</b>: each campaign's state under it is shown beside its own (counted, never published).</p>",
            esc(&sh.version)
        );
    }
    for s in sections {
        let _ = write!(
            page,
            "<h2>{} ({})</h2>",
            match s.state {
                CampaignState::Blocked => "Blocked",
                CampaignState::Flagged => "Flagged",
                CampaignState::Ok => "Ok",
            },
            s.total
        );
        if s.total == 0 {
            page.push_str("<p class=\"none\">None.</p>");
        }
        for r in &s.campaigns {
            campaign_html(r, shadow, &mut page);
        }
        let more = s.total.saturating_sub(s.campaigns.len());
        if more > 0 {
            let _ = write!(
                page,
                "<p class=\"none\">and {more} more: <a href=\"/v1/campaigns?state={}\">/v1/campaigns?state={}</a> (paged).</p>",
                s.state.as_str(),
                s.state.as_str()
            );
        }
    }
    page.push_str("<footer>Numbers are counted over the policy's rolling window on this instance. JSON: <a href=\"/v1/campaigns\">/v1/campaigns</a> · <a href=\"/metrics\">/metrics</a></footer></body></html>");
    page
}

/// Escape text for HTML.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn pct(x: Option<f64>) -> String {
    x.map(|v| format!("{:.1}%", v * 100.0))
        .unwrap_or_else(|| "—".into())
}

fn num(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.2}")).unwrap_or_else(|| "—".into())
}

fn why(r: &CampaignReport) -> String {
    if let Some(o) = &r.override_ {
        return format!(
            "Overridden ({}) by {}: {}",
            o.action.as_str(),
            o.by,
            o.reason
        );
    }
    match (&r.finding, r.state) {
        (_, CampaignState::Ok) => {
            "Within limits, or not enough decisions yet for a verdict.".into()
        }
        (Some(f), _) => {
            let dim = r
                .dimensions
                .get(f.dimension)
                .map(|d| d.dimension.as_str())
                .unwrap_or("?");
            match f.measure {
                Measure::SelectionRateRatio => format!(
                    "By {dim}: selection-rate ratio {:.2} (at most {:.2} with confidence), limit {:.2}.",
                    f.value, f.bound, f.threshold
                ),
                Measure::ShareDistance => format!(
                    "By {dim}: delivery-share distance {:.2} (at least {:.2} with confidence), limit {:.2}.",
                    f.value, f.bound, f.threshold
                ),
            }
        }
        (None, _) => "—".into(),
    }
}

fn campaign_html(r: &CampaignReport, shadow: Option<&ShadowStates>, out: &mut String) {
    use std::fmt::Write;
    let shadowed = match shadow {
        Some(sh) => match sh.states.get(&r.campaign) {
            Some(st) => format!(
                " <small>shadow:</small> <span class=\"badge {s}\">{s}</span>",
                s = st.as_str()
            ),
            None => " <small>shadow: not tracked</small>".to_string(),
        },
        None => String::new(),
    };
    let _ = write!(
        out,
        "<section class=\"campaign {state}\" id=\"c-{id}\"><h3>{id} <span class=\"badge {state}\">{state}</span>{shadowed} <small>{cat}</small></h3><p class=\"why\">{why}</p>",
        id = esc(&r.campaign),
        state = r.state.as_str(),
        cat = esc(&r.category),
        why = esc(&why(r)),
    );
    for d in &r.dimensions {
        let _ = write!(
            out,
            "<table><caption>{} — ratio {} · distance {}</caption><tr><th>group</th><th>considered</th><th>selected</th><th>rate</th><th>share</th><th>baseline</th></tr>",
            esc(&d.dimension),
            num(d.selection_rate_ratio),
            num(d.share_distance)
        );
        for g in &d.groups {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&g.group),
                g.considered,
                g.selected,
                pct(g.selection_rate),
                pct(g.share),
                pct(g.baseline_share)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

const CSS: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}h1{margin:0}header p{color:#555}\
section.campaign{border:1px solid #ddd;border-radius:6px;padding:.5em 1em;margin:.6em 0}\
section.flagged{border-color:#e0a800;background:#fffbea}section.blocked{border-color:#c0392b;background:#fdecea}\
.badge{font-size:.75em;padding:.1em .5em;border-radius:1em;color:#fff;background:#27ae60}.badge.flagged{background:#e0a800}.badge.blocked{background:#c0392b}\
table{border-collapse:collapse;margin:.3em 0 .6em}td,th{border-bottom:1px solid #eee;padding:.15em .7em;text-align:right}td:first-child,th:first-child{text-align:left}\
caption{text-align:left;font-weight:600}.why{margin:.2em 0}.none{color:#888}footer{margin-top:2em;color:#777}";
