//! Config: the shipped and example files parse; bad files report every problem at once.

use std::path::{Path, PathBuf};

use mailroom::config::{
    self, Config, DEFAULT_CONFIG, DestinationKind, LoadError, MissedPolicy, OverlapPolicy,
    SourceKind, Step, WarehouseConfig,
};

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// Parses `text` as `config.toml` in a temporary folder holding `sql_files`.
fn parse_in_dir(
    text: &str,
    sql_files: &[&str],
) -> (tempfile::TempDir, Result<Config, Vec<String>>) {
    let dir = tempfile::tempdir().expect("tempdir");
    for file in sql_files {
        let path = dir.path().join(file);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, "-- title = \"t\"\nSELECT 1\n").expect("write sql");
    }
    let result = config::parse(text, "config.toml", dir.path()).map_err(|err| match err {
        LoadError::Invalid(errors) => errors.0.iter().map(ToString::to_string).collect(),
        other => vec![other.to_string()],
    });
    (dir, result)
}

#[test]
fn the_shipped_config_runs_every_job_against_the_sandbox_with_no_environment() {
    let config = config::parse(DEFAULT_CONFIG, "config.toml", Path::new("."))
        .expect("shipped config is valid");
    assert!(config.sandbox.enabled);
    assert_eq!(
        config.warehouse,
        WarehouseConfig::Local {
            path: "warehouse".into()
        }
    );
    let names: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "extract-orders",
            "extract-loyalty",
            "extract-email",
            "compact-warehouse",
            "weekly-email-report",
            "loyalty-report",
            "daily-winback",
            "loyalty-sync"
        ]
    );
    let compact = config.job("compact-warehouse").expect("compact job");
    assert_eq!(compact.steps, [Step::Compact { keep_days: 7 }]);
    let loyalty = config.job("loyalty-report").expect("loyalty job");
    assert!(
        matches!(&loyalty.steps[1], Step::Deliver { to: DestinationKind::Sheets, target, mode: config::DeliveryMode::Replace, .. } if target == "Loyalty"),
        "{:?}",
        loyalty.steps
    );
    assert!(
        config.secret_refs().is_empty(),
        "the sandbox supplies every credential"
    );
    assert!(
        config
            .environment_problems(&[("UNRELATED", "x")])
            .is_empty()
    );
    let on_disk = std::fs::read_to_string(repo_file("config.toml")).expect("config.toml");
    assert_eq!(
        on_disk, DEFAULT_CONFIG,
        "the embedded default is the shipped file"
    );
}

#[test]
fn the_production_example_names_every_secret_it_needs_from_the_environment() {
    // The example is meant to sit beside the shipped `reports/` and `queries/` folders, as
    // the repository's root holds them.
    let text = std::fs::read_to_string(repo_file("examples/production.toml")).expect("example");
    let config =
        config::parse(&text, "examples/production.toml", &repo_file("")).expect("example is valid");
    assert!(!config.sandbox.enabled);
    assert!(
        matches!(config.warehouse, WarehouseConfig::BigQuery { ref dataset, .. } if dataset == "mailroom")
    );
    let shopify = &config.sources.services[&SourceKind::Shopify];
    assert_eq!(
        shopify.base_url.as_ref().map(|u| u.as_str()),
        Some("https://acme-store.myshopify.com/admin/api/2026-10")
    );

    let problems = config.environment_problems(&[("SMILE_API_KEY", "k")]);
    let mut vars: Vec<String> = problems
        .iter()
        .map(|p| p.message.split(' ').nth(2).unwrap_or_default().to_string())
        .collect();
    vars.sort();
    assert_eq!(
        vars,
        [
            "DOTDIGITAL_API_PASSWORD",
            "ITERABLE_API_KEY",
            "SHOPIFY_ACCESS_TOKEN",
            "SLACK_BOT_TOKEN",
            "SMARTRMAIL_API_TOKEN"
        ]
    );
    let shopify_problem = problems
        .iter()
        .find(|p| p.key == "sources.shopify.access_token")
        .expect("shopify");
    assert_eq!(shopify_problem.line, 22);
    assert!(
        shopify_problem
            .message
            .contains("SHOPIFY_ACCESS_TOKEN is not set (needed by sources.shopify.access_token)")
    );

    let all_set = [
        ("SMILE_API_KEY", "a"),
        ("SHOPIFY_ACCESS_TOKEN", "b"),
        ("SMARTRMAIL_API_TOKEN", "c"),
        ("ITERABLE_API_KEY", "d"),
        ("DOTDIGITAL_API_PASSWORD", "e"),
        ("SLACK_BOT_TOKEN", "f"),
    ];
    assert!(config.environment_problems(&all_set).is_empty());
}

#[test]
fn unknown_key_bad_cron_unknown_zone_and_literal_token_are_all_reported_in_one_run() {
    let text = r#"
[sources.smile]
api_key = "sk_live_51HcQ2xYz"

[[jobs]]
name = "loyalty"
schedule = "0 */2 * * mon-fryday"
timezone = "Australia/Sydny"
overlpa = "skip"
steps = [{ type = "extract", source = "smile" }]
"#;
    let (_dir, result) = parse_in_dir(text, &[]);
    let errors = result.expect_err("four problems");
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert!(
        errors[0]
            .starts_with("config.toml:3:12: sources.smile.api_key: looks like a literal secret"),
        "{}",
        errors[0]
    );
    assert!(
        !errors.concat().contains("sk_live"),
        "the secret must not be echoed"
    );
    assert!(
        errors[1].starts_with("config.toml:7:13: jobs[0].schedule: invalid cron expression"),
        "{}",
        errors[1]
    );
    assert!(
        errors[2].starts_with(
            "config.toml:8:13: jobs[0].timezone: unknown time zone \"Australia/Sydny\""
        ),
        "{}",
        errors[2]
    );
    assert!(errors[2].contains("did you mean \"Australia/Sydney\""));
    assert!(
        errors[3].starts_with("config.toml:9:1: jobs[0].overlpa: unknown key `overlpa`"),
        "{}",
        errors[3]
    );
    assert!(errors[3].contains("did you mean `overlap`"));
}

#[test]
fn bad_choices_and_types_name_the_valid_values() {
    let text = r#"
data_dir = 5
[warehouse]
type = "bigqeury"
[sandbox]
enabled = true
[[jobs]]
name = "Bad Name"
schedule = "*/5 * * * *"
overlap = "skp"
missed = "later"
retries = 99
steps = [{ type = "extrct" }]
"#;
    let (_dir, result) = parse_in_dir(text, &[]);
    let errors = result.expect_err("problems");
    let expect = [
        (
            "config.toml:2:12: data_dir: expected a string, found an integer",
            "",
        ),
        (
            "config.toml:4:9: warehouse.type: unknown value \"bigqeury\"",
            "did you mean `bigquery`?",
        ),
        (
            "config.toml:8:9: jobs[0].name: \"Bad Name\" is not a valid job name",
            "lowercase",
        ),
        (
            "config.toml:10:12: jobs[0].overlap: unknown value \"skp\"",
            "did you mean `skip`?",
        ),
        (
            "config.toml:11:11: jobs[0].missed: unknown value \"later\"",
            "valid choices: `skip`, `run_once`",
        ),
        (
            "config.toml:12:11: jobs[0].retries: 99 is out of range",
            "from 0 to 20",
        ),
        (
            "config.toml:13:20: jobs[0].steps[0].type: unknown value \"extrct\"",
            "did you mean `extract`?",
        ),
    ];
    assert_eq!(errors.len(), expect.len(), "{errors:#?}");
    for (error, (start, hint)) in errors.iter().zip(expect) {
        assert!(
            error.starts_with(start),
            "{error}\n  should start with {start}"
        );
        assert!(error.contains(hint), "{error}\n  should contain {hint}");
    }
}

#[test]
fn steps_must_refer_to_configured_sources_destinations_files_and_earlier_steps() {
    let text = r##"
[sandbox]
enabled = true
[sources.smile]
[sources.smartrmail]
[destinations.slack]

[[jobs]]
name = "weekly"
schedule = "0 9 * * 1"
timezone = "Europe/London"
steps = [
  { type = "extract", source = "shopify" },
  { type = "extract", source = "smile", streams = ["customer"] },
  { type = "sql", file = "reports/missing.sql" },
  { type = "sql", file = "reports/weekly.sql", params = { days = 7, label = "wk" } },
  { type = "deliver", from = "weekyl", to = "slack", channel = "#marketing" },
  { type = "deliver", from = "weekly", to = "sheets", sheet = "Weekly" },
  { type = "activate", from = "weekly", platform = "iterable", sequence = "123", channel_id = 31 },
  { type = "extract", source = "smartrmail", streams = ["campaigns"] },
  { type = "sql", file = "reports/weekly.sql", name = "bad_into", into = "Weekly Report" },
]
[[jobs]]
name = "weekly"
schedule = "0 9 * * 1"
steps = [{ type = "extract", source = "smile" }]
"##;
    let (_dir, result) = parse_in_dir(text, &["reports/weekly.sql"]);
    let errors = result.expect_err("problems");
    let expect = [
        "jobs[0].steps[0].source: source \"shopify\" is not configured",
        "jobs[0].steps[1].streams[0]: smile has no stream \"customer\"",
        "jobs[0].steps[2].file: SQL file \"reports/missing.sql\" not found",
        "jobs[0].steps[4].from: no earlier sql step in this job is named \"weekyl\"",
        "jobs[0].steps[5].to: destination \"sheets\" is not configured",
        "jobs[0].steps[6].platform: platform \"iterable\" is not configured",
        "jobs[0].steps[7].streams[0]: SmartrMail's campaigns stream is experimental and not enabled",
        "jobs[0].steps[8].into: \"Weekly Report\" is not a table name mailroom writes",
        "jobs[1].name: job name \"weekly\" is already used by jobs[0]",
    ];
    assert_eq!(errors.len(), expect.len(), "{errors:#?}");
    for (error, want) in errors.iter().zip(expect) {
        assert!(error.contains(want), "{error}\n  should contain {want}");
    }
    assert!(
        errors[3].contains("did you mean `weekly`?"),
        "{}",
        errors[3]
    );
}

#[test]
fn a_valid_job_is_typed_with_its_defaults() {
    let text = r##"
[sandbox]
enabled = true
[sources.smile]
[destinations.slack]
[[jobs]]
name = "weekly"
schedule = "0 9 * * 1"
timezone = "Europe/London"
steps = [
  { type = "extract", source = "smile" },
  { type = "sql", file = "reports/weekly.sql", params = { days = 7 } },
  { type = "deliver", from = "weekly", to = "slack", channel = "#marketing" },
  { type = "sql", file = "reports/weekly.sql", name = "stored", into = "report_weekly", deliver = false },
]
"##;
    let (dir, result) = parse_in_dir(text, &["reports/weekly.sql"]);
    let config = result.expect("valid");
    let job = &config.jobs[0];
    assert_eq!(
        (job.overlap, job.missed, job.retries),
        (OverlapPolicy::Skip, MissedPolicy::RunOnce, 3)
    );
    assert_eq!(job.timeout.as_secs(), 3600);
    assert_eq!(job.schedule.timezone(), chrono_tz::Europe::London);
    assert_eq!(
        job.steps[0],
        Step::Extract {
            source: SourceKind::Smile,
            streams: vec![
                "customers".into(),
                "vip_tiers".into(),
                "points_transactions".into()
            ]
        }
    );
    assert!(
        matches!(&job.steps[1], Step::Sql { name, file, .. } if name == "weekly" && file == &dir.path().join("reports/weekly.sql"))
    );
    assert!(
        matches!(&job.steps[3], Step::Sql { name, into: Some("report_weekly"), header_deliveries: false, .. } if name == "stored"),
        "{:?}",
        job.steps[3]
    );
    assert!(
        matches!(
            &job.steps[1],
            Step::Sql {
                into: None,
                header_deliveries: true,
                ..
            }
        ),
        "defaults"
    );
    assert_eq!(
        job.steps[2],
        Step::Deliver {
            from: "weekly".into(),
            to: DestinationKind::Slack,
            target: "#marketing".into(),
            mode: mailroom::config::DeliveryMode::Append,
        }
    );
    assert_eq!(config.data_dir, dir.path().join("data"));
    assert_eq!(
        config.local_warehouse_dir(),
        Some(dir.path().join("data/warehouse"))
    );
}

#[test]
fn credentials_are_required_without_the_sandbox() {
    let text = "[sources.smile]\n[sources.dotdigital]\nusername = \"api@x\"\n[destinations.slack]\n[warehouse]\ntype = \"bigquery\"\nproject = \"Acme\"\ndataset = \"mail room\"\n";
    let (_dir, result) = parse_in_dir(text, &[]);
    let errors = result.expect_err("problems");
    let expect = [
        "sources.smile.api_key: missing required key `api_key`",
        "sources.dotdigital.password: missing required key `password`",
        "destinations.slack.bot_token: missing required key `bot_token`",
        "warehouse.project: \"Acme\" is not a valid name",
        "warehouse.dataset: \"mail room\" is not a valid name",
        "warehouse.credentials_file: missing required key `credentials_file`",
    ];
    for want in expect {
        assert!(
            errors.iter().any(|e| e.contains(want)),
            "missing {want} in {errors:#?}"
        );
    }
    assert_eq!(errors.len(), expect.len(), "{errors:#?}");
}

#[test]
fn invalid_toml_is_reported_with_its_position() {
    let (_dir, result) = parse_in_dir("[jobs\nname = 1\n", &[]);
    let errors = result.expect_err("syntax error");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("config.toml:1:"), "{}", errors[0]);
    assert!(errors[0].contains("invalid TOML"), "{}", errors[0]);
}

/// The streams config accepts are exactly the streams each source extracts.
#[test]
fn every_stream_config_accepts_is_one_its_source_extracts() {
    use mailroom::sources::Source;
    for kind in SourceKind::ALL {
        let source = crate::support::source(kind, "http://127.0.0.1:9");
        let mut extracted: Vec<&str> = source.streams().iter().map(|s| s.name).collect();
        let mut accepted = kind.streams().to_vec();
        extracted.sort_unstable();
        accepted.sort_unstable();
        assert_eq!(extracted, accepted, "{}", kind.name());
        for stream in source.streams() {
            stream.table.validate().unwrap();
        }
    }
}

#[test]
fn the_sandbox_anchor_is_today_by_default_or_a_fixed_day() {
    use mailroom::config::SandboxAnchor;
    let parse = |sandbox: &str| {
        config::parse(
            &format!("[sandbox]\nenabled = true\n{sandbox}\n"),
            "c.toml",
            Path::new("."),
        )
    };
    let default = parse("").expect("valid");
    assert_eq!(default.sandbox.anchor, SandboxAnchor::Today);
    let now = chrono::DateTime::parse_from_rfc3339("2026-12-01T21:15:00Z")
        .expect("time")
        .with_timezone(&chrono::Utc);
    assert_eq!(
        default.sandbox.anchor.at(now).to_rfc3339(),
        "2026-12-01T00:00:00+00:00"
    );
    let fixed = parse("anchor = \"2026-11-01\"").expect("valid");
    assert_eq!(
        fixed.sandbox.anchor.at(now).to_rfc3339(),
        "2026-11-01T00:00:00+00:00",
        "the same world on every date"
    );
    let err = parse("anchor = \"yesterday\"").expect_err("invalid");
    assert!(
        err.to_string()
            .contains("sandbox.anchor: \"yesterday\" is neither \"today\" nor a date"),
        "{err}"
    );
}
