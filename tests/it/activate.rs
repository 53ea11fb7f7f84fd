//! Win-back enrollment against the sandbox, checked against the seeded world: who should
//! be enrolled is computed here from the world itself (lapsed by their orders, Shopify
//! consent, SmartrMail's own record), not from mailroom's SQL. The shipped
//! `daily-winback` job enrolls exactly those people minus its holdout (within 3 points of
//! its 10%), creates nobody, never writes a subscription flag, plans in a dry run exactly
//! what it then does, and enrolls nobody again on a rerun.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mailroom::config::JobConfig;
use mailroom::pipeline::Pipeline;
use mailroom::scheduler::{Executor, RunContext};
use mailroom::state::{Arm, EnrollmentStatus, StateStore, Trigger};
use mailroom_sandbox::world::{Consent, World};
use mailroom_sandbox::{RunningSandbox, SandboxOptions};
use serde_json::Value;

use crate::support::{get_json, services_with, shipped_config};

/// The run's fire time: the world's anchor, so "90 days before" is fixed.
fn anchor(options: &SandboxOptions) -> DateTime<Utc> {
    options.world.anchor
}

fn shipped_job(name: &str) -> JobConfig {
    shipped_config()
        .jobs
        .into_iter()
        .find(|j| j.name == name)
        .unwrap_or_else(|| panic!("the shipped config has {name}"))
}

fn run(id: &str, at: DateTime<Utc>, dry_run: bool) -> RunContext {
    RunContext {
        run_id: id.into(),
        trigger: Trigger::Manual,
        scheduled_for: at,
        covers_from: None,
        attempt: 1,
        dry_run,
    }
}

/// The shipped config against `sandbox`, its data under `dir`.
fn pipeline(sandbox: &RunningSandbox, dir: &Path) -> Pipeline {
    let mut config = shipped_config();
    config.base_dir = Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
    config.data_dir = dir.to_path_buf();
    let retry = mailroom::http::RetryPolicy {
        base: Duration::from_millis(10),
        ..mailroom::http::RetryPolicy::default()
    };
    let services = services_with(&sandbox.base_url, None, retry);
    let state = StateStore::open(&dir.join("state.db")).expect("state");
    Pipeline::new(Arc::new(config), Arc::new(services), Arc::new(state))
}

/// A sandbox for `options`, a data directory, the world's anchor and the shipped config's
/// pipeline over them, with what `lapsed_customers.sql` reads already loaded.
async fn loaded(
    options: &SandboxOptions,
) -> (RunningSandbox, tempfile::TempDir, DateTime<Utc>, Pipeline) {
    let sandbox = crate::support::sandbox(options.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let at = anchor(options);
    let pipeline = pipeline(&sandbox, dir.path());
    extract(&pipeline, at).await;
    (sandbox, dir, at, pipeline)
}

/// Loads what `lapsed_customers.sql` reads: Shopify, Smile and SmartrMail.
async fn extract(pipeline: &Pipeline, at: DateTime<Utc>) {
    use mailroom::config::{SourceKind, Step};
    let mut job = shipped_job("extract-email");
    job.steps = vec![Step::Extract {
        source: SourceKind::SmartrMail,
        streams: vec!["subscribers".into()],
    }];
    for (i, job) in [
        shipped_job("extract-orders"),
        shipped_job("extract-loyalty"),
        job,
    ]
    .iter()
    .enumerate()
    {
        pipeline
            .execute(job, &run(&format!("extract-{i}"), at, false))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", job.name));
    }
}

/// Whether `person`'s last uncancelled order is more than 90 days before `at`.
fn lapsed(world: &World, person: &mailroom_sandbox::world::Person, at: DateTime<Utc>) -> bool {
    world
        .orders_of(person)
        .iter()
        .filter(|o| o.cancelled_at.is_none())
        .map(|o| o.created_at)
        .max()
        .is_some_and(|t| t < at - chrono::Duration::days(90))
}

/// Who may be enrolled, from the world alone: a last (uncancelled) order more than 90
/// days before `at`, Shopify consent, and known, subscribed and never complained on
/// SmartrMail. E-mail → SmartrMail subscriber id.
fn expected(world: &World, at: DateTime<Utc>) -> HashMap<String, String> {
    let mut eligible = HashMap::new();
    for person in world.people() {
        let lapsed = lapsed(world, &person, at);
        let Some(subscriber) = world.subscriber_of(&person) else {
            continue;
        };
        let mailable =
            subscriber.subscribed && !subscriber.complained && subscriber.unsubscribed_at.is_none();
        if lapsed && person.consent == Consent::Subscribed && mailable {
            eligible.insert(person.email.clone(), subscriber.id);
        }
    }
    eligible
}

/// Every key of every object in `value`, at any depth.
fn keys(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                out.insert(k.clone());
                keys(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

/// No subscription flag written, nobody resubscribed, nobody created.
fn assert_nothing_forbidden(state: &Value) {
    let writes = state["platform_writes"].as_array().expect("writes");
    for write in writes {
        let path = write["path"].as_str().unwrap_or_default();
        assert!(!path.ends_with("/resubscribe"), "{write}");
        assert!(!path.ends_with("/unsubscribe"), "{write}");
        let mut seen = BTreeSet::new();
        keys(&write["body"], &mut seen);
        assert!(
            !seen.contains("subscribed"),
            "a subscription flag was sent: {write}"
        );
    }
    let created: Vec<&Value> = state["smartrmail"]["changed_subscribers"]
        .as_array()
        .expect("subscribers")
        .iter()
        .filter(|s| s["id"].as_str().is_some_and(|id| id.starts_with("s_new")))
        .collect();
    assert!(created.is_empty(), "subscribers created: {created:?}");
}

#[tokio::test]
async fn daily_winback_enrolls_exactly_the_mailable_lapsed_minus_the_holdout_once() {
    let options = SandboxOptions {
        smile_rate_limit: None,
        ..SandboxOptions::new(42, 5000)
    };
    let (sandbox, dir, at, pipeline) = loaded(&options).await;
    let world = World::new(options.world);
    let eligible = expected(&world, at);
    assert!(
        eligible.len() > 100,
        "a world worth testing: {}",
        eligible.len()
    );

    // A dry run reads and plans; it writes nothing anywhere.
    let winback = shipped_job("daily-winback");
    let (_, _, before) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    let plan = pipeline
        .execute(&winback, &run("dry", at, true))
        .await
        .expect("dry run");
    let (_, _, after) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    assert_eq!(
        after["platform_writes"], before["platform_writes"],
        "the dry run wrote"
    );
    let ledger = StateStore::open(&dir.path().join("state.db")).expect("state");
    assert!(
        ledger
            .enrollments("smartrmail", "l_winback")
            .expect("read")
            .is_empty()
    );

    let counters = pipeline
        .execute(&winback, &run("winback-1", at, false))
        .await
        .expect("enrolled");
    let rows = ledger.enrollments("smartrmail", "l_winback").expect("read");
    let enrolled: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r.status == EnrollmentStatus::Enrolled)
        .map(|r| r.email.as_str())
        .collect();
    let held: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r.status == EnrollmentStatus::HeldOut)
        .map(|r| r.email.as_str())
        .collect();
    let assigned: BTreeSet<&str> = enrolled.union(&held).copied().collect();
    let wanted: BTreeSet<&str> = eligible.keys().map(String::as_str).collect();
    assert_eq!(
        assigned, wanted,
        "enrolled or held out: exactly the mailable lapsed"
    );
    assert!(
        rows.iter()
            .filter(|r| r.status == EnrollmentStatus::HeldOut)
            .all(|r| r.arm == Some(Arm::Holdout))
    );
    let share = held.len() as f64 / assigned.len() as f64;
    assert!(
        (share - 0.1).abs() <= 0.03,
        "held out {share:.3} of {}",
        assigned.len()
    );
    // The plan matched what was done.
    assert_eq!(
        plan.get("activate.would_enroll"),
        Some(&(enrolled.len() as u64)),
        "{plan:?}"
    );
    assert_eq!(plan.get("activate.held_out"), Some(&(held.len() as u64)));
    assert_eq!(
        counters.get("activate.enrolled"),
        Some(&(enrolled.len() as u64)),
        "{counters:?}"
    );

    // On SmartrMail: the treatment group on the win-back list, with their fields.
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    let on_list: BTreeSet<&str> = state["smartrmail"]["lists"]["l_winback"]["added"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let treatment_ids: BTreeSet<&str> = enrolled.iter().map(|e| eligible[*e].as_str()).collect();
    assert_eq!(on_list, treatment_ids);
    let changed = state["smartrmail"]["changed_subscribers"]
        .as_array()
        .expect("changed");
    let one = changed
        .iter()
        .find(|s| s["email"].as_str().is_some_and(|e| enrolled.contains(e)))
        .expect("an enrolled person's fields");
    let fields: BTreeSet<&str> = one["custom_fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["field_name"].as_str())
        .collect();
    assert!(
        fields.contains("days_since_last_order") && fields.contains("order_count"),
        "{fields:?}"
    );
    assert!(
        changed.iter().all(|s| s["subscribed"] == true),
        "nobody's subscription changed"
    );
    assert_nothing_forbidden(&state);
    let summaries = |state: &Value| -> Vec<Value> {
        state["slack"]["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter(|m| {
                m["blocks"][0]["text"]["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("Win-back"))
            })
            .cloned()
            .collect()
    };
    let posted = summaries(&state);
    assert_eq!(posted.len(), 1, "one summary in #marketing");
    let table = posted[0].to_string();
    assert!(
        table.contains("enrolled")
            && table.contains("held_out")
            && table.contains("unknown_on_platform"),
        "{table}"
    );

    // The same day again (a rerun): nobody new, nothing written.
    let writes = state["platform_writes"].as_array().map_or(0, Vec::len);
    let again = pipeline
        .execute(&winback, &run("winback-2", at, false))
        .await
        .expect("rerun");
    assert_eq!(again.get("activate.enrolled"), None, "{again:?}");
    assert_eq!(
        again.get("activate.already_enrolled"),
        Some(&(enrolled.len() as u64))
    );
    let (_, _, later) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    assert_eq!(
        later["platform_writes"].as_array().map_or(0, Vec::len),
        writes
    );

    // The ledger is in the warehouse for the results report.
    let mut config = shipped_config();
    config.data_dir = dir.path().to_path_buf();
    let services = services_with(
        &sandbox.base_url,
        None,
        mailroom::http::RetryPolicy::default(),
    );
    let queries = mailroom::warehouse::open_for_queries(&config, &services).expect("queries");
    let counted = queries
        .run("SELECT COUNT(*) AS n FROM `winback_enrollments` WHERE outcome = 'enrolled' AND arm = 'treatment'")
        .await
        .expect("winback_enrollments");
    let n = arrow::compute::cast(
        counted.batches[0].column(0),
        &arrow::datatypes::DataType::Int64,
    )
    .expect("count");
    let n = n
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .expect("int64")
        .value(0);
    assert_eq!(n as usize, enrolled.len());

    // The results report runs on what the shipped jobs made: every assigned person counted
    // in their arm (nobody has ordered since: the world's orders end at its anchor).
    let report = mailroom::sql::SqlFile::read(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("reports/winback_results.sql"),
    )
    .expect("report");
    let sql = report
        .render(
            Utc::now() + chrono::Duration::hours(1),
            &Default::default(),
            &queries.table_names(),
        )
        .expect("render");
    let results = queries.run(&sql).await.expect("winback_results runs");
    let batch = arrow::compute::concat_batches(&results.schema, &results.batches).expect("batch");
    let total = |name: &str| -> i64 {
        let column = arrow::compute::cast(
            batch.column_by_name(name).expect(name),
            &arrow::datatypes::DataType::Int64,
        )
        .expect("int");
        let values = column
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .expect("int64");
        values.iter().flatten().sum()
    };
    assert_eq!(total("treated") as usize, enrolled.len());
    assert_eq!(total("held_out") as usize, held.len());
    assert_eq!(total("treated_buyers"), 0);
}

/// How many times each e-mail was sent in a bulk add to the win-back list.
fn list_adds(state: &Value) -> HashMap<String, usize> {
    let mut adds = HashMap::new();
    for write in state["platform_writes"].as_array().expect("writes") {
        let path = write["path"].as_str().unwrap_or_default();
        if write["method"] == "POST" && path.ends_with("/lists/l_winback/list_subscribers") {
            for s in write["body"]["subscribers"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let email = s["email"].as_str().unwrap_or_default().to_string();
                *adds.entry(email).or_default() += 1;
            }
        }
    }
    adds
}

/// A real `mailroom run-job daily-winback` child process `SIGKILL`ed at several points —
/// after its first write, mid-way through the field updates, just as a bulk add goes out —
/// and then run to the end: everyone who may be enrolled ends enrolled or held out,
/// nobody is sent to the list twice, and nobody who may not be mailed is touched.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_enrollment_run_enrolls_nobody_twice_and_finishes_on_the_rerun() {
    use std::process::Stdio;

    use crate::cli::{KillOnDrop, mailroom, run as run_cli, write_config};
    let options = SandboxOptions {
        smile_rate_limit: None,
        ..SandboxOptions::new(7, 1500)
    };
    let sandbox = crate::support::sandbox(options.clone()).await;
    let base = sandbox.base_url.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "{}\n[[jobs]]\nname = \"extract-smartrmail\"\nschedule = \"0 5 * * *\"\ntimezone = \"UTC\"\nsteps = [\n  {{ type = \"extract\", source = \"smartrmail\", streams = [\"subscribers\"] }},\n]\n",
        mailroom::config::DEFAULT_CONFIG
    );
    write_config(dir.path(), &config);
    let path = dir.path().to_path_buf();
    let cli = move |args: &[&str]| {
        let mut cmd = mailroom(&path);
        cmd.args(["--sandbox-url", &base, "--data-dir", "data"])
            .args(args);
        cmd
    };
    let load = cli.clone();
    tokio::task::spawn_blocking(move || {
        for job in ["extract-orders", "extract-loyalty", "extract-smartrmail"] {
            let (code, _, stderr) = run_cli(&mut load(&["run-job", job]));
            assert_eq!(code, 0, "{job}: {stderr}");
        }
    })
    .await
    .expect("extracted");

    let writes = || async {
        let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
        state["platform_writes"].as_array().map_or(0, Vec::len)
    };
    // Kill points, counted in platform writes since the round began: the first field
    // update, the middle of the first batch, the bulk add that closes it (written before
    // the sandbox answers it), and later.
    for kill_after in [1usize, 50, 101, 140] {
        let start = writes().await;
        let child = cli(&["run-job", "daily-winback"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let mut child = KillOnDrop(child);
        loop {
            if child.0.try_wait().expect("child").is_some() {
                break;
            }
            if writes().await >= start + kill_after {
                child.0.kill().expect("SIGKILL");
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = child.0.wait();
    }
    let finish = cli.clone();
    let (code, stdout, stderr) =
        tokio::task::spawn_blocking(move || run_cli(&mut finish(&["run-job", "daily-winback"])))
            .await
            .expect("rerun");
    assert_eq!(code, 0, "{stdout}\n{stderr}");

    let world = World::new(options.world);
    let ledger = StateStore::open(&dir.path().join("data/state.db")).expect("state");
    let rows = ledger.enrollments("smartrmail", "l_winback").expect("read");
    let in_flight: Vec<&str> = rows
        .iter()
        .filter(|r| {
            !matches!(
                r.status,
                EnrollmentStatus::Enrolled | EnrollmentStatus::HeldOut | EnrollmentStatus::Skipped
            )
        })
        .map(|r| r.email.as_str())
        .collect();
    assert!(in_flight.is_empty(), "every person settled: {in_flight:?}");
    let assigned: BTreeSet<&str> = rows
        .iter()
        .filter(|r| {
            matches!(
                r.status,
                EnrollmentStatus::Enrolled | EnrollmentStatus::HeldOut
            )
        })
        .map(|r| r.email.as_str())
        .collect();
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    // `run-job` stands for the moment it runs: lapsing is judged at about now.
    let mailable = expected(&world, Utc::now());
    let wanted: BTreeSet<&str> = mailable.keys().map(String::as_str).collect();
    assert_eq!(
        assigned, wanted,
        "enrolled or held out: exactly the mailable lapsed"
    );
    let adds = list_adds(&state);
    let twice: Vec<(&String, &usize)> = adds.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent to the list twice: {twice:?}");
    let enrolled: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r.status == EnrollmentStatus::Enrolled)
        .map(|r| r.email.as_str())
        .collect();
    let added: BTreeSet<&str> = adds.keys().map(String::as_str).collect();
    assert_eq!(added, enrolled, "the list holds exactly the enrolled");
    assert!(enrolled.len() > 50, "{}", enrolled.len());
    assert_nothing_forbidden(&state);

    // `mailroom status` tells where the sequence's people stand.
    let status = cli.clone();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        run_cli(&mut status(&["status", "--job", "daily-winback"]))
    })
    .await
    .expect("status");
    assert_eq!(code, 0, "{stderr}");
    let line = stdout
        .lines()
        .skip_while(|l| !l.starts_with("ENROLLMENTS"))
        .find(|l| l.starts_with("daily-winback"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        line.contains("smartrmail l_winback")
            && line.contains(&format!("{} enrolled", enrolled.len())),
        "{line}"
    );
}

/// Under 429s on the consent reads, 503s on the field updates and a connection reset as a
/// bulk add is answered, the run still enrolls exactly the mailable lapsed (the client
/// retries what is safe to repeat; adding a list member again changes nothing).
#[tokio::test]
async fn faults_on_smartrmail_change_nobody_s_outcome() {
    use mailroom_sandbox::faults::{Fault, FaultRule};
    let rule = |method: &str, path: &str, after: u32, times: u32, fault: Fault| FaultRule {
        method: Some(method.into()),
        path: path.into(),
        after,
        times,
        fault,
        seen: 0,
    };
    let options = SandboxOptions {
        smile_rate_limit: None,
        faults: vec![
            rule(
                "GET",
                "/smartrmail/api/v1/subscribers/",
                3,
                2,
                Fault::RateLimit {
                    retry_after_secs: Some(0),
                },
            ),
            rule(
                "PUT",
                "/smartrmail/api/v1/subscribers/",
                5,
                2,
                Fault::ServerError { status: 503 },
            ),
            rule(
                "POST",
                "/smartrmail/api/v1/lists/l_winback/list_subscribers",
                0,
                1,
                Fault::ConnectionReset,
            ),
        ],
        ..SandboxOptions::new(11, 1200)
    };
    let (sandbox, dir, at, pipeline) = loaded(&options).await;
    let counters = pipeline
        .execute(&shipped_job("daily-winback"), &run("winback-1", at, false))
        .await
        .expect("enrolled despite the faults");
    let eligible = expected(&World::new(options.world), at);
    let ledger = StateStore::open(&dir.path().join("state.db")).expect("state");
    let rows = ledger.enrollments("smartrmail", "l_winback").expect("read");
    let assigned: BTreeSet<&str> = rows
        .iter()
        .filter(|r| {
            matches!(
                r.status,
                EnrollmentStatus::Enrolled | EnrollmentStatus::HeldOut
            )
        })
        .map(|r| r.email.as_str())
        .collect();
    let wanted: BTreeSet<&str> = eligible.keys().map(String::as_str).collect();
    assert_eq!(assigned, wanted, "{counters:?}");
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    let faults_left: u64 = state["faults"]
        .as_array()
        .expect("faults")
        .iter()
        .map(|f| {
            let last = f["after"].as_u64().unwrap_or(0) + f["times"].as_u64().unwrap_or(0);
            last.saturating_sub(f["seen"].as_u64().unwrap_or(0))
        })
        .sum();
    assert_eq!(faults_left, 0, "every fault was met: {}", state["faults"]);
    let on_list: BTreeSet<&str> = state["smartrmail"]["lists"]["l_winback"]["added"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let treatment: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r.status == EnrollmentStatus::Enrolled)
        .map(|r| eligible[r.email.as_str()].as_str())
        .collect();
    assert_eq!(on_list, treatment);
    assert_nothing_forbidden(&state);
}

/// Who the shipped lapsed query names, from the world alone: lapsed by their orders,
/// Shopify consent, and not unsubscribed or complained on SmartrMail (the query's own
/// rule; people SmartrMail does not know are named too).
fn lapsed_people(world: &World, at: DateTime<Utc>) -> Vec<mailroom_sandbox::world::Person> {
    world
        .people()
        .filter(|person| {
            let lapsed = lapsed(world, person, at);
            let smartrmail_ok = world
                .subscriber_of(person)
                .is_none_or(|s| s.subscribed && !s.complained && s.unsubscribed_at.is_none());
            lapsed && person.consent == Consent::Subscribed && smartrmail_ok
        })
        .collect()
}

/// Iterable: the journey is triggered once for each lapsed person whose profile exists
/// and who left neither the marketing channel nor the win-back message type; a trigger
/// the platform failed on is `unknown` and never re-sent; nothing creates a profile or
/// touches subscriptions.
#[tokio::test]
async fn iterable_win_back_triggers_the_journey_once_for_each_consenting_profile() {
    use mailroom::config::{ActivatePolicy, SourceKind, Step};
    use mailroom_sandbox::faults::{Fault, FaultRule};
    use mailroom_sandbox::world::{ITERABLE_MARKETING_CHANNEL, ITERABLE_WINBACK_MESSAGE_TYPE};
    let options = SandboxOptions {
        smile_rate_limit: None,
        faults: vec![FaultRule {
            method: Some("POST".into()),
            path: "/iterable/api/workflows/triggerWorkflow".into(),
            after: 4,
            times: 1,
            fault: Fault::ServerError { status: 500 },
            seen: 0,
        }],
        ..SandboxOptions::new(5, 1500)
    };
    let (sandbox, dir, at, pipeline) = loaded(&options).await;
    let mut job = shipped_job("daily-winback");
    job.name = "iterable-winback".into();
    job.steps[1] = Step::Activate {
        from: "lapsed".into(),
        platform: SourceKind::Iterable,
        sequence: "330012".into(),
        policy: ActivatePolicy {
            holdout: 0.1,
            channel_id: Some(ITERABLE_MARKETING_CHANNEL),
            message_type_id: Some(ITERABLE_WINBACK_MESSAGE_TYPE),
            ..ActivatePolicy::default()
        },
    };
    let world = World::new(options.world);
    let wanted: BTreeSet<String> = lapsed_people(&world, at)
        .iter()
        .filter_map(|p| world.iterable_user_of(p))
        .filter(|u| {
            !u.unsubscribed_channel_ids
                .contains(&ITERABLE_MARKETING_CHANNEL)
                && !u
                    .unsubscribed_message_type_ids
                    .contains(&ITERABLE_WINBACK_MESSAGE_TYPE)
        })
        .map(|u| u.email)
        .collect();
    assert!(wanted.len() > 50, "{}", wanted.len());

    let first = pipeline
        .execute(&job, &run("iterable-1", at, false))
        .await
        .expect("run");
    let again = pipeline
        .execute(&job, &run("iterable-2", at, false))
        .await
        .expect("rerun");
    assert_eq!(again.get("activate.enrolled"), None, "{again:?}");

    let ledger = StateStore::open(&dir.path().join("state.db")).expect("state");
    let rows = ledger.enrollments("iterable", "330012").expect("read");
    let with = |status: EnrollmentStatus| -> BTreeSet<String> {
        rows.iter()
            .filter(|r| r.status == status)
            .map(|r| r.email.clone())
            .collect()
    };
    let (enrolled, held, unknown) = (
        with(EnrollmentStatus::Enrolled),
        with(EnrollmentStatus::HeldOut),
        with(EnrollmentStatus::Unknown),
    );
    assert_eq!(unknown.len(), 1, "the 500'd trigger: {first:?}");
    let settled: BTreeSet<String> = enrolled
        .iter()
        .chain(&held)
        .chain(&unknown)
        .cloned()
        .collect();
    assert_eq!(
        settled, wanted,
        "every consenting profile enrolled, held out or reported"
    );
    assert!(
        rows.iter()
            .filter(|r| r.status == EnrollmentStatus::Skipped)
            .all(|r| !wanted.contains(&r.email))
    );

    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    let mut triggered: HashMap<String, usize> = HashMap::new();
    for t in state["iterable"]["workflow_triggers"]
        .as_array()
        .expect("triggers")
    {
        assert_eq!(t["workflowId"], 330012);
        *triggered
            .entry(t["email"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    assert!(
        triggered.values().all(|n| *n == 1),
        "triggered twice: {triggered:?}"
    );
    let triggered: BTreeSet<String> = triggered.into_keys().collect();
    assert_eq!(
        triggered, enrolled,
        "the journey holds exactly the enrolled"
    );
    let trigger = state["iterable"]["workflow_triggers"][0]["dataFields"].clone();
    assert!(trigger.get("days_since_last_order").is_some(), "{trigger}");
    assert_eq!(
        state["iterable"]["list_subscriptions"],
        serde_json::json!([])
    );
    assert_eq!(
        state["iterable"]["subscription_updates"],
        serde_json::json!([])
    );
    assert_eq!(
        state["iterable"]["users"],
        serde_json::json!({}),
        "no profile written"
    );
}

/// Dotdigital: the program gets exactly the lapsed, consenting people whose contact is
/// `Subscribed` and who are not on the account's suppression list — complainers whose
/// contact still says `Subscribed` included — in as few enrolment calls as the hour's
/// allowance permits; with the allowance used up, everyone waits and nothing is sent.
#[tokio::test]
async fn dotdigital_win_back_enrolls_subscribed_unsuppressed_contacts_within_the_allowance() {
    use mailroom::config::{ActivatePolicy, SourceKind, Step};
    let options = SandboxOptions {
        smile_rate_limit: None,
        ..SandboxOptions::new(3, 1500)
    };
    let (sandbox, dir, at, pipeline) = loaded(&options).await;
    // A query that trusts no e-mail platform: lapsed Shopify customers with consent.
    let sql = dir.path().join("lapsed_any.sql");
    std::fs::write(
        &sql,
        "-- title = \"Lapsed, any platform\"\n\
         SELECT o.email_normalized AS email, COUNT(*) AS order_count\n\
         FROM {{ ref('shopify_orders') }} AS o\n\
         JOIN {{ ref('shopify_customers') }} AS c ON c.email_normalized = o.email_normalized\n\
         WHERE o.cancelled_at IS NULL AND c.marketing_state = 'SUBSCRIBED'\n\
         GROUP BY o.email_normalized\n\
         HAVING MAX(o.created_at) < TIMESTAMP_SUB({{ now }}, INTERVAL 90 DAY)\n",
    )
    .expect("sql");
    let mut job = shipped_job("daily-winback");
    job.name = "dotdigital-winback".into();
    job.steps = vec![
        Step::Sql {
            name: "lapsed".into(),
            file: sql,
            params: Default::default(),
            into: None,
            header_deliveries: false,
        },
        Step::Activate {
            from: "lapsed".into(),
            platform: SourceKind::Dotdigital,
            sequence: "77012".into(),
            policy: ActivatePolicy {
                holdout: 0.1,
                ..ActivatePolicy::default()
            },
        },
    ];
    let world = World::new(options.world);
    let mut complainers_still_subscribed = 0;
    let wanted: BTreeSet<String> = world
        .people()
        .filter(|person| lapsed(&world, person, at) && person.consent == Consent::Subscribed)
        .filter_map(|person| world.subscriber_of(&person))
        .filter(|s| {
            if s.subscribed && s.complained {
                complainers_still_subscribed += 1;
            }
            s.subscribed && !s.complained
        })
        .map(|s| s.email)
        .collect();
    assert!(
        wanted.len() > 50 && complainers_still_subscribed > 0,
        "{} {complainers_still_subscribed}",
        wanted.len()
    );

    // The hour's allowance already used: everyone eligible waits, nothing is sent.
    let ledger = StateStore::open(&dir.path().join("state.db")).expect("state");
    for _ in 0..20 {
        ledger
            .record_platform_call("dotdigital", "enrolment", Utc::now())
            .expect("call");
    }
    let waiting = pipeline
        .execute(&job, &run("dotdigital-0", at, false))
        .await
        .expect("deferred");
    assert!(
        waiting.get("activate.deferred").is_some_and(|n| *n > 0),
        "{waiting:?}"
    );
    assert_eq!(waiting.get("activate.enrolled"), None);
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    assert_eq!(state["dotdigital"]["enrolments"], serde_json::json!([]));
    rusqlite::Connection::open(dir.path().join("state.db"))
        .and_then(|c| c.execute("DELETE FROM platform_calls", []))
        .expect("an hour later");

    pipeline
        .execute(&job, &run("dotdigital-1", at, false))
        .await
        .expect("enrolled");
    let again = pipeline
        .execute(&job, &run("dotdigital-2", at, false))
        .await
        .expect("rerun");
    assert_eq!(again.get("activate.enrolled"), None, "{again:?}");
    let rows = ledger.enrollments("dotdigital", "77012").expect("read");
    let with = |status: EnrollmentStatus| -> BTreeSet<String> {
        rows.iter()
            .filter(|r| r.status == status)
            .map(|r| r.email.clone())
            .collect()
    };
    let (enrolled, held) = (
        with(EnrollmentStatus::Enrolled),
        with(EnrollmentStatus::HeldOut),
    );
    let assigned: BTreeSet<String> = enrolled.union(&held).cloned().collect();
    assert_eq!(assigned, wanted);
    assert!(
        rows.iter()
            .any(|r| r.reason.as_deref() == Some("suppressed_on_platform"))
    );

    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    let enrolments = state["dotdigital"]["enrolments"]
        .as_array()
        .expect("enrolments");
    assert_eq!(enrolments.len(), 1, "one call for everyone: {enrolments:?}");
    let ids: Vec<u64> = enrolments[0]["contacts"]
        .as_array()
        .expect("contacts")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let expected_ids: BTreeSet<u64> = enrolled
        .iter()
        .filter_map(|e| world.person_by_email(e))
        .map(|p| 4_400_000 + u64::from(p.index))
        .collect();
    assert_eq!(ids.iter().copied().collect::<BTreeSet<u64>>(), expected_ids);
    assert_eq!(ids.len(), expected_ids.len(), "nobody twice");
    assert_eq!(state["dotdigital"]["resubscribes"], serde_json::json!([]));
    assert_eq!(
        state["dotdigital"]["changed_contacts"],
        serde_json::json!([]),
        "no contact written"
    );
    assert_nothing_forbidden(&state);
}

/// Far more eligible people than recent runs had (a broken upstream load, usually) stops
/// the step before anything is sent, saying how to go on; `--force` goes on.
#[tokio::test]
async fn the_anomaly_guard_stops_a_run_far_above_the_usual_until_forced() {
    use mailroom::state::ActivationCounts;
    let options = SandboxOptions {
        smile_rate_limit: None,
        ..SandboxOptions::new(13, 800)
    };
    let (sandbox, dir, at, mut pipeline) = loaded(&options).await;
    let ledger = StateStore::open(&dir.path().join("state.db")).expect("state");
    for day in 1..=3 {
        let counts = ActivationCounts {
            eligible: 2,
            ..ActivationCounts::default()
        };
        ledger
            .record_activation_run(
                &format!("earlier-{day}"),
                "daily-winback",
                "smartrmail",
                "l_winback",
                counts,
                at - chrono::Duration::days(day),
            )
            .expect("history");
    }
    let winback = shipped_job("daily-winback");
    let err = pipeline
        .execute(&winback, &run("spike", at, false))
        .await
        .expect_err("stopped");
    assert_eq!(err.kind, mailroom::error::ErrorKind::Terminal);
    assert!(
        err.message.contains("median of the last 3 runs (2)")
            && err
                .message
                .contains("mailroom run-job daily-winback --force"),
        "{}",
        err.message
    );
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    assert_eq!(
        state["platform_writes"],
        serde_json::json!([]),
        "nothing sent"
    );
    pipeline.force_activation(true);
    let forced = pipeline
        .execute(&winback, &run("forced", at, false))
        .await
        .expect("forced");
    assert!(
        forced.get("activate.enrolled").is_some_and(|n| *n > 0),
        "{forced:?}"
    );
}

/// The secret environment of a SmartrMail account with a custom-event webhook.
struct EventHookEnv(String);

impl mailroom::secret::Environment for EventHookEnv {
    fn get(&self, var: &str) -> Option<String> {
        (var == "SMARTRMAIL_EVENT_HOOK").then(|| self.0.clone())
    }
}

/// With `custom_event_webhook` set, SmartrMail win-back posts one custom event per enrolled
/// person with their fields, and leaves the list alone; a rerun posts nothing.
#[tokio::test]
async fn smartrmail_custom_events_enroll_once_each_without_touching_the_list() {
    use mailroom::services::{Overrides, ServiceKind, Services};
    let options = SandboxOptions {
        smile_rate_limit: None,
        ..SandboxOptions::new(17, 800)
    };
    let sandbox = crate::support::sandbox(options.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let at = anchor(&options);
    let mut config = shipped_config();
    config.base_dir = Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
    config.data_dir = dir.path().to_path_buf();
    let endpoints = mailroom_sandbox::services(&sandbox.base_url);
    let overrides = Overrides::from_endpoints(
        endpoints.iter().map(|e| (e.key, e.base_url.as_str())),
        mailroom_sandbox::CREDENTIAL,
    )
    .expect("sandbox URLs");
    let mut sections = config.service_sections();
    sections
        .get_mut(&ServiceKind::SmartrMail)
        .expect("[sources.smartrmail]")
        .secrets
        .insert(
            "custom_event_webhook",
            mailroom::secret::SecretRef {
                var: "SMARTRMAIL_EVENT_HOOK".into(),
                key: "sources.smartrmail.custom_event_webhook".into(),
                file: "config.toml".into(),
                line: 1,
                column: 1,
            },
        );
    let hook = format!(
        "{}/smartrmail/hooks/custom-events/sandbox",
        sandbox.base_url
    );
    let services = Services::new(
        sections,
        overrides,
        Box::new(EventHookEnv(hook)),
        mailroom::http::HttpClient::new(mailroom::http::Timeouts::default()).expect("client"),
        mailroom::http::RetryPolicy {
            base: Duration::from_millis(10),
            ..mailroom::http::RetryPolicy::default()
        },
    );
    let state = StateStore::open(&dir.path().join("state.db")).expect("state");
    let pipeline = Pipeline::new(Arc::new(config), Arc::new(services), Arc::new(state));
    extract(&pipeline, at).await;
    let winback = shipped_job("daily-winback");
    pipeline
        .execute(&winback, &run("events-1", at, false))
        .await
        .expect("enrolled");
    pipeline
        .execute(&winback, &run("events-2", at, false))
        .await
        .expect("rerun");
    let ledger = StateStore::open(&dir.path().join("state.db")).expect("state");
    let enrolled: BTreeSet<String> = ledger
        .enrollments("smartrmail", "l_winback")
        .expect("read")
        .into_iter()
        .filter(|r| r.status == EnrollmentStatus::Enrolled)
        .map(|r| r.email)
        .collect();
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    let events = state["smartrmail"]["custom_events"]
        .as_array()
        .expect("events");
    let mut seen: HashMap<String, usize> = HashMap::new();
    for event in events {
        *seen
            .entry(event["email"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
        assert_eq!(event["event"], "l_winback");
        assert!(event.get("days_since_last_order").is_some(), "{event}");
    }
    assert!(seen.values().all(|n| *n == 1), "an event twice: {seen:?}");
    assert_eq!(seen.keys().cloned().collect::<BTreeSet<_>>(), enrolled);
    assert!(!enrolled.is_empty());
    assert_eq!(
        state["smartrmail"]["lists"]["l_winback"]["added"],
        serde_json::json!([]),
        "the list is left alone"
    );
    assert_nothing_forbidden(&state);
}
