//! The shipped `loyalty-sync` job against the sandbox: each platform's existing people get
//! their Smile values (as the world has them) under the platform's field names, nobody is
//! created, Dotdigital's data fields are made once, a second run writes nothing, and a
//! single changed value is the only thing a later run sends.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mailroom::pipeline::Pipeline;
use mailroom::scheduler::{Executor, RunContext};
use mailroom::state::{StateStore, Trigger};
use mailroom_sandbox::SandboxOptions;
use mailroom_sandbox::world::World;
use serde_json::{Value, json};

use crate::support::{get_json, services_with, shipped_config};

fn job(name: &str) -> mailroom::config::JobConfig {
    shipped_config()
        .jobs
        .into_iter()
        .find(|j| j.name == name)
        .expect("shipped job")
}

fn run(id: &str) -> RunContext {
    RunContext {
        run_id: id.into(),
        trigger: Trigger::Manual,
        scheduled_for: chrono::Utc::now(),
        covers_from: None,
        attempt: 1,
        dry_run: false,
    }
}

fn writes(state: &Value) -> usize {
    state["platform_writes"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn loyalty_fields_reach_existing_people_once_and_only_when_they_change() {
    let options = SandboxOptions {
        smile_rate_limit: None,
        ..SandboxOptions::new(21, 300)
    };
    let sandbox = crate::support::sandbox(options.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = shipped_config();
    config.base_dir = Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
    config.data_dir = dir.path().to_path_buf();
    let retry = mailroom::http::RetryPolicy {
        base: Duration::from_millis(10),
        ..mailroom::http::RetryPolicy::default()
    };
    let services = services_with(&sandbox.base_url, None, retry);
    let state = Arc::new(StateStore::open(&dir.path().join("state.db")).expect("state"));
    let pipeline = Pipeline::new(Arc::new(config), Arc::new(services), state.clone());
    pipeline
        .execute(&job("extract-loyalty"), &run("extract"))
        .await
        .expect("smile loaded");
    let sync = job("loyalty-sync");
    let first = pipeline
        .execute(&sync, &run("sync-1"))
        .await
        .expect("synced");
    let (_, _, after_first) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;

    // What each person should carry: their Smile account updated last.
    let world = World::new(options.world);
    let smile: BTreeMap<String, mailroom_sandbox::world::SmileCustomer> = world
        .people()
        .filter_map(|p| {
            world
                .smile_customers_of(&p)
                .into_iter()
                .max_by_key(|c| (c.updated_at, c.id))
                .map(|c| (p.email.clone(), c))
        })
        .collect();

    // SmartrMail: custom fields on known subscribers, nobody new, nobody resubscribed.
    let changed = after_first["smartrmail"]["changed_subscribers"]
        .as_array()
        .expect("subscribers");
    assert!(!changed.is_empty(), "{first:?}");
    for subscriber in changed {
        let id = subscriber["id"].as_str().expect("id");
        assert!(!id.starts_with("s_new"), "created {id}");
        let email = subscriber["email"].as_str().expect("email");
        let Some(customer) = smile.get(email) else {
            continue;
        };
        let field = |name: &str| {
            subscriber["custom_fields"]
                .as_array()
                .and_then(|f| f.iter().find(|f| f["field_name"] == name))
                .map(|f| f["value"].clone())
        };
        assert_eq!(
            field("points_balance"),
            Some(json!(customer.points_balance.to_string()))
        );
        assert_eq!(field("referral_url"), Some(json!(customer.referral_url)));
        assert_eq!(field("member_state"), Some(json!(customer.state)));
    }

    // Iterable: only profiles that existed were written.
    let users = after_first["iterable"]["users"].as_object().expect("users");
    assert!(!users.is_empty());
    for (email, fields) in users {
        let person = world.person_by_email(email).expect("a world person");
        assert!(
            world.iterable_user_of(&person).is_some(),
            "{email} was created"
        );
        let customer = &smile[email.as_str()];
        assert_eq!(fields["pointsBalance"], json!(customer.points_balance));
        assert_eq!(fields["vipTier"], json!(customer.vip_tier.map(|t| t.name)));
    }
    assert_eq!(after_first["iterable"]["list_subscriptions"], json!([]));

    // Dotdigital: five data fields made once; only existing contacts written.
    let created_fields: Vec<&Value> = after_first["platform_writes"]
        .as_array()
        .expect("writes")
        .iter()
        .filter(|w| w["path"] == "/dotdigital/v2/data-fields")
        .collect();
    assert_eq!(created_fields.len(), 5, "{created_fields:?}");
    let contacts = after_first["dotdigital"]["changed_contacts"]
        .as_array()
        .expect("contacts");
    assert!(!contacts.is_empty());
    assert!(
        contacts
            .iter()
            .all(|c| c["id"].as_u64().is_some_and(|id| id < 9_000_000)),
        "none created"
    );
    // A field write never changes a contact's subscription status.
    for contact in contacts {
        let person = world
            .person_by_email(contact["email"].as_str().expect("email"))
            .expect("a world person");
        let subscriber = world.subscriber_of(&person).expect("a seeded contact");
        let seeded = match (subscriber.subscribed, subscriber.complained) {
            (true, _) => "Subscribed",
            (false, true) => "IspComplained",
            (false, false) => "Unsubscribed",
        };
        assert_eq!(contact["status"], seeded, "{contact}");
    }
    let one = &contacts[0];
    let email = one["email"].as_str().expect("email");
    let points = one["dataFields"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["key"] == "POINTS"))
        .map(|f| f["value"].clone());
    assert_eq!(points, Some(json!(smile[email].points_balance)));

    // A second run with nothing changed writes nothing anywhere.
    let second = pipeline
        .execute(&sync, &run("sync-2"))
        .await
        .expect("again");
    let (_, _, after_second) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    assert_eq!(writes(&after_second), writes(&after_first), "{second:?}");
    assert_eq!(second.get("loyalty.written_fields"), None);

    // One value forgotten for one person on SmartrMail: that one field is all that is sent.
    let forgotten = changed[0]["email"].as_str().expect("email").to_string();
    rusqlite::Connection::open(dir.path().join("state.db"))
        .and_then(|c| {
            c.execute(
                "DELETE FROM loyalty_synced WHERE platform = 'smartrmail' AND email_normalized = ?1 AND field = 'referral_url'",
                [&forgotten],
            )
        })
        .expect("forget");
    let third = pipeline
        .execute(&sync, &run("sync-3"))
        .await
        .expect("third");
    assert_eq!(third.get("loyalty.written_fields"), Some(&1), "{third:?}");
    let (_, _, after_third) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    let new: Vec<&Value> = after_third["platform_writes"].as_array().expect("writes")
        [writes(&after_second)..]
        .iter()
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    let sent: BTreeSet<&str> = new[0]["body"]["custom_fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["field_name"].as_str())
        .collect();
    assert_eq!(sent, BTreeSet::from(["referral_url"]));
    let mut keys = BTreeSet::new();
    for write in after_third["platform_writes"].as_array().expect("writes") {
        if let Some(body) = write["body"].as_object() {
            keys.extend(body.keys().cloned());
        }
        assert!(
            !write["path"]
                .as_str()
                .unwrap_or_default()
                .contains("resubscribe")
        );
        assert!(
            !write["path"]
                .as_str()
                .unwrap_or_default()
                .contains("updateSubscriptions")
        );
    }
    assert!(!keys.contains("subscribed"), "{keys:?}");
}
