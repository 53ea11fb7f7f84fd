//! The status page at `/`: plain HTML a person reads — each job with its schedule in its
//! zone, next run, last status and failures since the last success; the latest runs with
//! durations and errors; recent deliveries; where each win-back sequence's people stand;
//! and rows loaded per day as an SVG chart (the same chart code as Slack's PNG). No
//! script, no build step; it refreshes itself every minute.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::chart::{BarChart, Series};
use crate::config::Config;
use crate::state::{StateError, StateStore};

/// Days the rows-loaded chart covers.
const CHART_DAYS: i64 = 14;
/// Runs the page lists.
const RECENT_RUNS: u32 = 25;

/// Text made safe for HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or("–".into(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}\
table{border-collapse:collapse;margin:8px 0 24px}th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}\
th{background:#f4f4f4}.failed,.interrupted,.unknown{color:#b00020;font-weight:600}.succeeded,.sent,.enrolled{color:#0a7a3b}\
.error{color:#b00020;font-size:12px;max-width:640px;white-space:pre-wrap}h1{font-size:20px}h2{font-size:16px;margin-top:24px}";

/// The page as it stands now.
pub fn render(
    config: &Config,
    state: &StateStore,
    now: DateTime<Utc>,
) -> Result<String, StateError> {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"60\">\
         <title>mailroom status</title><style>{STYLE}</style></head><body>\
         <h1>mailroom</h1><p>As of {}. Data directory {}.</p>",
        when(Some(now)),
        escape(&config.data_dir.display().to_string())
    );

    html.push_str("<h2>Jobs</h2><table id=\"jobs\"><tr><th>Job</th><th>Schedule</th><th>Next run</th><th>Last run</th><th>Last success</th><th>Failures since</th></tr>");
    for job in &config.jobs {
        let summary = state.job_summary(&job.name)?;
        let zone = job.schedule.timezone();
        let next = job.schedule.next_after(now).map_or("–".into(), |t| {
            t.with_timezone(&zone)
                .format("%a %Y-%m-%d %H:%M %Z")
                .to_string()
        });
        let last = summary.last_run.as_ref().map_or("never".to_string(), |r| {
            format!(
                "<span class=\"{0}\">{0}</span> {1}",
                r.status.as_str(),
                when(r.started_at)
            )
        });
        let _ = write!(
            html,
            "<tr><td>{}</td><td><code>{}</code> ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&job.name),
            escape(job.schedule.expression()),
            zone,
            escape(&next),
            last,
            when(summary.last_success),
            summary.failures_since_success
        );
    }
    html.push_str("</table>");

    html.push_str("<h2>Latest runs</h2><table id=\"runs\"><tr><th>Job</th><th>Status</th><th>Started</th><th>Took</th><th>Attempts</th><th>Error</th></tr>");
    for run in state.recent_runs(None, RECENT_RUNS)? {
        let took = match (run.started_at, run.finished_at) {
            (Some(a), Some(b)) => format!("{:.1} s", (b - a).num_milliseconds() as f64 / 1000.0),
            _ => "–".into(),
        };
        let _ = write!(
            html,
            "<tr><td>{job}</td><td class=\"{status}\">{status}</td><td>{started}</td><td>{took}</td><td>{attempts}</td><td class=\"error\">{error}</td></tr>",
            job = escape(&run.job),
            status = run.status.as_str(),
            started = when(run.started_at),
            attempts = run.attempts,
            error = escape(run.error.as_deref().unwrap_or(""))
        );
    }
    html.push_str("</table>");

    let mut deliveries = Vec::new();
    for job in &config.jobs {
        deliveries.extend(state.recent_deliveries(&job.name, 5)?);
    }
    if !deliveries.is_empty() {
        html.push_str("<h2>Recent deliveries</h2><table id=\"deliveries\"><tr><th>Job</th><th>Report</th><th>Period</th><th>To</th><th>Status</th><th>Rows</th></tr>");
        for d in &deliveries {
            let _ = write!(
                html,
                "<tr><td>{job}</td><td>{report}</td><td>{period}</td><td>{destination} {target}</td><td class=\"{status}\">{status}</td><td>{rows}</td></tr>",
                job = escape(&d.delivery.job),
                report = escape(&d.delivery.report),
                period = escape(&d.delivery.period),
                destination = escape(&d.delivery.destination),
                target = escape(&d.delivery.target),
                status = d.status.as_str(),
                rows = d.rows.map_or("–".into(), |n| n.to_string())
            );
        }
        html.push_str("</table>");
    }

    let mut tallies = Vec::new();
    for job in &config.jobs {
        for tally in state.enrollment_tallies(&job.name)? {
            tallies.push((job.name.clone(), tally));
        }
    }
    if !tallies.is_empty() {
        html.push_str("<h2>Win-back</h2><table id=\"enrollments\"><tr><th>Job</th><th>Sequence</th><th>People</th></tr>");
        for (job, tally) in &tallies {
            let people: Vec<String> = tally
                .by_status
                .iter()
                .map(|(status, n)| format!("{n} <span class=\"{0}\">{0}</span>", status.as_str()))
                .collect();
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{} {}</td><td>{}</td></tr>",
                escape(job),
                escape(&tally.platform),
                escape(&tally.sequence),
                people.join(", ")
            );
        }
        html.push_str("</table>");
    }

    let days = state.rows_per_day(now, CHART_DAYS)?;
    let chart = BarChart {
        title: format!("Rows loaded per day, last {CHART_DAYS} days"),
        categories: days.iter().map(|(d, _)| d[5..].to_string()).collect(),
        series: vec![Series {
            name: "rows loaded".into(),
            values: days.iter().map(|(_, n)| Some(*n as f64)).collect(),
        }],
    };
    html.push_str("<h2>Loading</h2>");
    match chart.svg(960, 320) {
        Ok(svg) => html.push_str(&svg),
        Err(err) => {
            let _ = write!(
                html,
                "<p>(the chart could not be drawn: {})</p>",
                escape(&err.to_string())
            );
        }
    }
    html.push_str("</body></html>");
    Ok(html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<b>\"x\" & 'y'</b>"),
            "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;"
        );
    }
}
