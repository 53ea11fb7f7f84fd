//! Validation of `[[jobs]]` and their steps: schedules, time zones, policies, and the
//! cross-references from steps to sources, destinations, SQL files and earlier steps.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use chrono_tz::Tz;
use toml_span::value::ValueInner;
use toml_span::{Spanned, Value};

use super::diagnostic::{Diagnostics, choices_help, closest};
use super::reader::{TableReader, element_string, type_name};
use super::{
    ActivatePolicy, DeliveryMode, DestinationKind, DestinationsConfig, JobConfig, MissedPolicy,
    OverlapPolicy, ParamValue, SourceKind, SourcesConfig, Step,
};
use crate::schedule::CronSchedule;

/// What steps may refer to.
pub(super) struct JobContext<'a> {
    pub sources: &'a SourcesConfig,
    pub destinations: &'a DestinationsConfig,
    pub base_dir: &'a Path,
    /// The built-in config, whose SQL files are compiled in when not on disk.
    pub builtin: bool,
}

const SCHEDULE_HELP: &str = "five fields `minute hour day-of-month month day-of-week` (seconds may come first), \
                             e.g. \"*/15 * * * *\" every 15 minutes, \"0 6 * * 1\" Mondays at 06:00";

/// Reads the `jobs` array.
pub(super) fn read_jobs(
    items: Option<Vec<Value<'_>>>,
    context: &JobContext<'_>,
    d: &mut Diagnostics<'_>,
) -> Vec<JobConfig> {
    let mut jobs = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, item) in items.unwrap_or_default().into_iter().enumerate() {
        let path = format!("jobs[{index}]");
        let Some(mut t) = TableReader::new(item, path, d) else {
            continue;
        };
        let name = read_name(&mut t, &mut seen, index, d);
        let job = read_job(&mut t, name, context, d);
        t.finish(d);
        jobs.extend(job);
    }
    jobs
}

fn read_name(
    t: &mut TableReader<'_>,
    seen: &mut HashMap<String, usize>,
    index: usize,
    d: &mut Diagnostics<'_>,
) -> Option<String> {
    let name = t.required_string(d, "name")?;
    let valid = name
        .value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        d.report(
            name.span.start,
            t.key_path("name"),
            format!("\"{}\" is not a valid job name", name.value),
            Some("use lowercase letters, digits, `-` and `_`, such as \"extract-orders\"".into()),
        );
        return None;
    }
    if let Some(first) = seen.insert(name.value.clone(), index) {
        d.report(
            name.span.start,
            t.key_path("name"),
            format!(
                "job name \"{}\" is already used by jobs[{first}]",
                name.value
            ),
            Some("job names must be unique".into()),
        );
        return None;
    }
    Some(name.value)
}

fn read_job(
    t: &mut TableReader<'_>,
    name: Option<String>,
    context: &JobContext<'_>,
    d: &mut Diagnostics<'_>,
) -> Option<JobConfig> {
    let tz = read_timezone(t, d);
    let schedule = t.required_string(d, "schedule").and_then(|expr| {
        match CronSchedule::parse(&expr.value, tz.unwrap_or(Tz::UTC)) {
            Ok(schedule) => Some(schedule),
            Err(err) => {
                d.report(
                    expr.span.start,
                    t.key_path("schedule"),
                    format!("invalid cron expression \"{}\": {err}", expr.value),
                    Some(SCHEDULE_HELP.into()),
                );
                None
            }
        }
    });
    let overlap = t
        .choice(
            d,
            "overlap",
            &[
                ("skip", OverlapPolicy::Skip),
                ("queue", OverlapPolicy::Queue),
            ],
        )
        .map_or(OverlapPolicy::Skip, |o| o.value);
    let missed = t
        .choice(
            d,
            "missed",
            &[
                ("skip", MissedPolicy::Skip),
                ("run_once", MissedPolicy::RunOnce),
            ],
        )
        .map_or(MissedPolicy::RunOnce, |m| m.value);
    let retries = t
        .integer(d, "retries", 0..=20)
        .map_or(3, |r| r.value as u32);
    let retry_backoff = t
        .integer(d, "retry_backoff_secs", 1..=3600)
        .map_or(30, |b| b.value as u64);
    let timeout = t
        .integer(d, "timeout_secs", 1..=7 * 24 * 3600)
        .map_or(3600, |s| s.value as u64);
    let alert_channel = t.string(d, "alert_channel");
    if let Some(channel) = &alert_channel
        && !context
            .destinations
            .services
            .contains_key(&DestinationKind::Slack)
    {
        d.report(
            channel.span.start,
            t.key_path("alert_channel"),
            "failure notices go to Slack, which is not configured".to_string(),
            Some("add a [destinations.slack] section with a bot_token".into()),
        );
    }
    let steps = read_steps(t, context, d);
    Some(JobConfig {
        name: name?,
        schedule: schedule?,
        overlap,
        missed,
        retries,
        retry_backoff: Duration::from_secs(retry_backoff),
        timeout: Duration::from_secs(timeout),
        steps: steps?,
        alert_channel: alert_channel.map(|c| c.value),
    })
    .filter(|_| tz.is_some())
}

fn read_timezone(t: &mut TableReader<'_>, d: &mut Diagnostics<'_>) -> Option<Tz> {
    let Some(given) = t.string(d, "timezone") else {
        return Some(Tz::UTC);
    };
    if let Ok(tz) = given.value.parse::<Tz>() {
        return Some(tz);
    }
    let names = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
    let help = match names
        .clone()
        .find(|n| n.eq_ignore_ascii_case(&given.value))
        .or_else(|| closest(&given.value, names))
    {
        Some(near) => format!("did you mean \"{near}\"? use an IANA time zone name"),
        None => "use an IANA time zone name, such as \"Australia/Sydney\" or \"America/New_York\""
            .to_string(),
    };
    d.report(
        given.span.start,
        t.key_path("timezone"),
        format!("unknown time zone \"{}\"", given.value),
        Some(help),
    );
    None
}

fn read_steps(
    t: &mut TableReader<'_>,
    context: &JobContext<'_>,
    d: &mut Diagnostics<'_>,
) -> Option<Vec<Step>> {
    let Some(items) = t.array(d, "steps") else {
        if !t.contains("steps") {
            t.missing(d, "steps", Some("a job needs at least one step".into()));
        }
        return None;
    };
    if items.is_empty() {
        t.missing(d, "steps", Some("a job needs at least one step".into()));
        return None;
    }
    let mut steps = Vec::new();
    let mut ok = true;
    let mut sql_names: Vec<String> = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let path = t.key_path(&format!("steps[{index}]"));
        let Some(mut step_table) = TableReader::new(item, path, d) else {
            ok = false;
            continue;
        };
        let step = read_step(&mut step_table, context, &sql_names, d);
        step_table.finish(d);
        match step {
            Some(step) => {
                if let Step::Sql { name, .. } = &step {
                    sql_names.push(name.clone());
                }
                steps.push(step);
            }
            None => ok = false,
        }
    }
    ok.then_some(steps)
}

#[derive(Clone, Copy)]
enum StepKind {
    Extract,
    Sql,
    Deliver,
    Activate,
    LoyaltySync,
    Compact,
}

fn read_step(
    t: &mut TableReader<'_>,
    context: &JobContext<'_>,
    sql_names: &[String],
    d: &mut Diagnostics<'_>,
) -> Option<Step> {
    if !t.contains("type") {
        t.missing(
            d,
            "type",
            Some(
                "valid choices: `extract`, `sql`, `deliver`, `activate`, `loyalty_sync`, `compact`"
                    .into(),
            ),
        );
    }
    let kind = t.choice(
        d,
        "type",
        &[
            ("extract", StepKind::Extract),
            ("sql", StepKind::Sql),
            ("deliver", StepKind::Deliver),
            ("activate", StepKind::Activate),
            ("loyalty_sync", StepKind::LoyaltySync),
            ("compact", StepKind::Compact),
        ],
    )?;
    match kind.value {
        StepKind::Extract => read_extract(t, context, d),
        StepKind::Sql => read_sql(t, context, sql_names, d),
        StepKind::Deliver => read_deliver(t, context, sql_names, d),
        StepKind::Activate => read_activate(t, context, sql_names, d),
        StepKind::LoyaltySync => read_loyalty_sync(t, context, d),
        StepKind::Compact => {
            let keep_days = t.integer(d, "keep_days", 0..=3650);
            if let Some(days) = keep_days.as_ref().filter(|k| k.value < MIN_KEEP_DAYS) {
                d.report(
                    days.span.start,
                    t.key_path("keep_days"),
                    format!("{} days is too short a retention", days.value),
                    Some(format!(
                        "use {MIN_KEEP_DAYS} or more: Delta Lake refuses to delete files a version of the last 168 hours may need"
                    )),
                );
            }
            let keep_days = keep_days.map_or(7, |k| k.value.max(MIN_KEEP_DAYS) as u32);
            Some(Step::Compact { keep_days })
        }
    }
}

/// The shortest retention `compact` may keep: Delta Lake's vacuum refuses less than 168 hours.
pub const MIN_KEEP_DAYS: i64 = 7;

fn source_choices() -> Vec<(&'static str, SourceKind)> {
    SourceKind::ALL.iter().map(|k| (k.name(), *k)).collect()
}

fn read_extract(
    t: &mut TableReader<'_>,
    context: &JobContext<'_>,
    d: &mut Diagnostics<'_>,
) -> Option<Step> {
    if !t.contains("source") {
        t.missing(d, "source", None);
    }
    let source = t.choice(d, "source", &source_choices());
    let streams = t.array(d, "streams");
    let source = source?;
    let kind = source.value;
    let mut ok = true;
    if !context.sources.services.contains_key(&kind) {
        d.report(
            source.span.start,
            t.key_path("source"),
            format!("source \"{}\" is not configured", kind.name()),
            Some(format!("add a [sources.{}] section", kind.name())),
        );
        ok = false;
    }
    let experimental = context
        .sources
        .services
        .get(&SourceKind::SmartrMail)
        .is_some_and(|section| section.flag("experimental_campaigns"));
    let is_enabled =
        |stream: &str| !(kind == SourceKind::SmartrMail && stream == "campaigns") || experimental;
    let streams = match streams {
        None => kind
            .streams()
            .iter()
            .filter(|s| is_enabled(s))
            .map(|s| s.to_string())
            .collect(),
        Some(items) => {
            let mut streams = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                let path = t.key_path(&format!("streams[{i}]"));
                let Some(stream) = element_string(item, &path, d) else {
                    ok = false;
                    continue;
                };
                if !kind.streams().contains(&stream.value.as_str()) {
                    d.report(
                        stream.span.start,
                        path,
                        format!("{} has no stream \"{}\"", kind.name(), stream.value),
                        Some(choices_help(&stream.value, kind.streams())),
                    );
                    ok = false;
                } else if !is_enabled(&stream.value) {
                    d.report(
                        stream.span.start,
                        path,
                        "SmartrMail's campaigns stream is experimental and not enabled",
                        Some("SmartrMail does not publish a campaigns API; set `experimental_campaigns = true` in [sources.smartrmail] to use mailroom's contract".into()),
                    );
                    ok = false;
                } else {
                    streams.push(stream.value);
                }
            }
            streams
        }
    };
    ok.then_some(Step::Extract {
        source: kind,
        streams,
    })
}

fn read_sql(
    t: &mut TableReader<'_>,
    context: &JobContext<'_>,
    sql_names: &[String],
    d: &mut Diagnostics<'_>,
) -> Option<Step> {
    let file = t.required_string(d, "file");
    let name = t.string(d, "name");
    let params = read_params(t, d);
    let into = read_into(t, d);
    let header_deliveries = t.boolean(d, "deliver").unwrap_or(true);
    let file = file?;
    let path = context.base_dir.join(&file.value);
    let found = path.is_file() || (context.builtin && super::shipped_sql(&path).is_some());
    if !found {
        d.report(
            file.span.start,
            t.key_path("file"),
            format!("SQL file \"{}\" not found (looked for {})", file.value, path.display()),
            Some("paths are relative to the config file's folder, e.g. \"reports/weekly_email_performance.sql\"".into()),
        );
        return None;
    }
    let step_name = match name {
        Some(name) => name,
        None => {
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
            toml_span::Spanned::with_span(stem.unwrap_or_default(), file.span)
        }
    };
    if sql_names.contains(&step_name.value) {
        d.report(
            step_name.span.start,
            t.key_path("name"),
            format!(
                "another sql step in this job is already named \"{}\"",
                step_name.value
            ),
            Some("set `name` to tell them apart".into()),
        );
        return None;
    }
    Some(Step::Sql {
        name: step_name.value,
        file: path,
        params: params?,
        into: into?,
        header_deliveries,
    })
}

/// `into`: a table the answer is also written to (replaced each run). `Some(None)` when not
/// set; `None` when it is not a name every warehouse takes.
fn read_into(t: &mut TableReader<'_>, d: &mut Diagnostics<'_>) -> Option<Option<&'static str>> {
    let Some(table) = t.string(d, "into") else {
        return Some(None);
    };
    let name = &table.value;
    let valid = !name.is_empty()
        && name.len() <= 1024
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with("_mailroom");
    if !valid {
        d.report(
            table.span.start,
            t.key_path("into"),
            format!("\"{name}\" is not a table name mailroom writes"),
            Some(
                "use lowercase letters, digits and underscores, such as \"report_weekly_email\""
                    .into(),
            ),
        );
        return None;
    }
    // Table declarations name their tables with 'static strings; a config is read once per
    // process, so each `into` name is kept for the process's life.
    Some(Some(Box::leak(table.value.into_boxed_str())))
}

fn read_params(
    t: &mut TableReader<'_>,
    d: &mut Diagnostics<'_>,
) -> Option<BTreeMap<String, ParamValue>> {
    let Some(mut table) = t.table(d, "params") else {
        return Some(BTreeMap::new());
    };
    let mut params = BTreeMap::new();
    let mut ok = true;
    for (key, mut value) in table.drain() {
        let span = value.span;
        let param = match value.take() {
            ValueInner::String(s) => ParamValue::String(s.into_owned()),
            ValueInner::Integer(n) => ParamValue::Integer(n),
            ValueInner::Float(x) => ParamValue::Float(x),
            ValueInner::Boolean(b) => ParamValue::Bool(b),
            other => {
                let found = type_name(&Value::with_span(other, span));
                d.report(
                    span.start,
                    table.key_path(&key.name),
                    format!("a parameter must be a string, number or boolean, found {found}"),
                    None,
                );
                ok = false;
                continue;
            }
        };
        params.insert(key.name.into_owned(), param);
    }
    table.finish(d);
    ok.then_some(params)
}

/// Reads `from`, which must name an earlier sql step of the same job.
fn read_from(
    t: &mut TableReader<'_>,
    sql_names: &[String],
    d: &mut Diagnostics<'_>,
) -> Option<String> {
    let from = t.required_string(d, "from")?;
    if sql_names.contains(&from.value) {
        return Some(from.value);
    }
    let help = if sql_names.is_empty() {
        "add a `sql` step before this one; `from` names its result".to_string()
    } else {
        let names: Vec<&str> = sql_names.iter().map(String::as_str).collect();
        choices_help(&from.value, &names)
    };
    d.report(
        from.span.start,
        t.key_path("from"),
        format!(
            "no earlier sql step in this job is named \"{}\"",
            from.value
        ),
        Some(help),
    );
    None
}

fn read_deliver(
    t: &mut TableReader<'_>,
    context: &JobContext<'_>,
    sql_names: &[String],
    d: &mut Diagnostics<'_>,
) -> Option<Step> {
    let from = read_from(t, sql_names, d);
    if !t.contains("to") {
        t.missing(d, "to", Some("valid choices: `sheets`, `slack`".into()));
    }
    let to = t.choice(
        d,
        "to",
        &[
            ("sheets", DestinationKind::Sheets),
            ("slack", DestinationKind::Slack),
        ],
    )?;
    let target = t.required_string(d, to.value.target_key());
    if !context.destinations.services.contains_key(&to.value) {
        d.report(
            to.span.start,
            t.key_path("to"),
            format!("destination \"{}\" is not configured", to.value.name()),
            Some(format!("add a [destinations.{}] section", to.value.name())),
        );
        return None;
    }
    let mode = match to.value {
        DestinationKind::Sheets => t
            .choice(
                d,
                "mode",
                &[
                    ("append", DeliveryMode::Append),
                    ("replace", DeliveryMode::Replace),
                ],
            )
            .map(|m| m.value)
            .unwrap_or_default(),
        // Slack has no mode: leaving `mode` unread reports it as an unknown key.
        DestinationKind::Slack => DeliveryMode::Append,
    };
    let target = target?;
    Some(Step::Deliver {
        from: from?,
        to: to.value,
        target: target.value,
        mode,
    })
}

/// A step's `platform`: one of the e-mail platforms, configured in `[sources]`. `None`
/// (with the problem reported) otherwise.
fn read_platform(
    t: &mut TableReader<'_>,
    context: &JobContext<'_>,
    d: &mut Diagnostics<'_>,
) -> Option<Spanned<SourceKind>> {
    let platforms: Vec<(&'static str, SourceKind)> = source_choices()
        .into_iter()
        .filter(|(_, k)| k.is_email_platform())
        .collect();
    if !t.contains("platform") {
        t.missing(
            d,
            "platform",
            Some("valid choices: `smartrmail`, `iterable`, `dotdigital`".into()),
        );
    }
    let platform = t.choice(d, "platform", &platforms)?;
    if !context.sources.services.contains_key(&platform.value) {
        d.report(
            platform.span.start,
            t.key_path("platform"),
            format!("platform \"{}\" is not configured", platform.value.name()),
            Some(format!(
                "add a [sources.{}] section with its credentials",
                platform.value.name()
            )),
        );
        return None;
    }
    Some(platform)
}

fn read_loyalty_sync(
    t: &mut TableReader<'_>,
    context: &JobContext<'_>,
    d: &mut Diagnostics<'_>,
) -> Option<Step> {
    let platform = read_platform(t, context, d);
    let clear_nulls = t.boolean(d, "clear_nulls").unwrap_or(false);
    Some(Step::LoyaltySync {
        platform: platform?.value,
        clear_nulls,
    })
}

fn read_activate(
    t: &mut TableReader<'_>,
    context: &JobContext<'_>,
    sql_names: &[String],
    d: &mut Diagnostics<'_>,
) -> Option<Step> {
    let from = read_from(t, sql_names, d);
    let platform = read_platform(t, context, d);
    let sequence = t.required_string(d, "sequence");
    let has_channel = t.contains("channel_id");
    let defaults = ActivatePolicy::default();
    let policy = ActivatePolicy {
        holdout: t
            .number(d, "holdout", 0.0..=0.5)
            .map_or(defaults.holdout, |x| x.value),
        cooldown_days: t
            .integer(d, "cooldown_days", 1..=3650)
            .map_or(defaults.cooldown_days, |n| n.value as u32),
        max_per_run: t
            .integer(d, "max_per_run", 1..=10_000_000)
            .map(|n| n.value as u64),
        anomaly_factor: t
            .number(d, "anomaly_factor", 1.0..=1000.0)
            .map_or(defaults.anomaly_factor, |x| x.value),
        suppress_from: t.string(d, "suppress_from").map(|s| s.value),
        channel_id: t
            .integer(d, "channel_id", 1..=i64::MAX)
            .map(|n| n.value as u64),
        message_type_id: t
            .integer(d, "message_type_id", 1..=i64::MAX)
            .map(|n| n.value as u64),
        summary_channel: t.string(d, "summary_channel").map(|channel| {
            if !context
                .destinations
                .services
                .contains_key(&DestinationKind::Slack)
            {
                d.report(
                    channel.span.start,
                    t.key_path("summary_channel"),
                    "win-back summaries go to Slack, which is not configured".to_string(),
                    Some("add a [destinations.slack] section".into()),
                );
            }
            channel.value
        }),
    };
    if platform
        .as_ref()
        .is_some_and(|p| p.value == SourceKind::Iterable)
    {
        if !has_channel {
            t.missing(
                d,
                "channel_id",
                Some("the Iterable marketing channel whose unsubscribes mean a person may not be mailed".into()),
            );
        }
        if let Some(sequence) = sequence
            .as_ref()
            .filter(|s| s.value.parse::<u64>().is_err())
        {
            d.report(
                sequence.span.start,
                t.key_path("sequence"),
                format!(
                    "an Iterable sequence is a journey id (a number), not {:?}",
                    sequence.value
                ),
                None,
            );
        }
    }
    let platform = platform?;
    Some(Step::Activate {
        from: from?,
        platform: platform.value,
        sequence: sequence?.value,
        policy,
    })
}
