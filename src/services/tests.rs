//! Unit tests of the services registry: specs, budgets per credential, overrides.

use std::sync::Arc;

use super::*;
use crate::http::Timeouts;

const KINDS: [ServiceKind; 8] = [
    ServiceKind::Smile,
    ServiceKind::Shopify,
    ServiceKind::SmartrMail,
    ServiceKind::Iterable,
    ServiceKind::Dotdigital,
    ServiceKind::Sheets,
    ServiceKind::Slack,
    ServiceKind::BigQuery,
];

#[test]
fn every_service_has_one_spec_and_a_unique_key() {
    for kind in KINDS {
        assert_eq!(kind.spec().kind, kind);
        assert_eq!(ServiceKind::from_key(kind.key()), Some(kind));
        let specs = specs::SPECS.iter().filter(|s| s.kind == kind).count();
        assert_eq!(specs, 1, "{kind:?}");
    }
    assert_eq!(specs::SPECS.len(), KINDS.len());
}

fn section(secrets: &[(&'static str, &str)], settings: &[(&'static str, &str)]) -> ServiceConfig {
    ServiceConfig {
        base_url: Some(Url::parse("https://api.example.com/v1").expect("url")),
        secrets: secrets
            .iter()
            .map(|(key, var)| {
                let reference = SecretRef {
                    var: var.to_string(),
                    key: format!("sources.x.{key}"),
                    file: "config.toml".into(),
                    line: 1,
                    column: 1,
                };
                (*key, reference)
            })
            .collect(),
        settings: settings.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        options: BTreeMap::new(),
    }
}

fn services(sections: BTreeMap<ServiceKind, ServiceConfig>, overrides: Overrides) -> Services {
    Services::new(
        sections,
        overrides,
        Box::new([("SMILE_KEY", "s3cret"), ("DD_PASSWORD", "pw")]),
        HttpClient::new(Timeouts::default()).expect("client"),
        RetryPolicy::default(),
    )
}

#[test]
fn every_connection_to_one_credential_shares_its_budgets() {
    let mut sections = BTreeMap::new();
    sections.insert(
        ServiceKind::Smile,
        section(&[("api_key", "SMILE_KEY")], &[]),
    );
    sections.insert(
        ServiceKind::Iterable,
        section(&[("api_key", "SMILE_KEY")], &[]),
    );
    let services = services(sections, Overrides::default());
    let reads = services.connection(ServiceKind::Smile).expect("smile");
    let writes = services
        .connection(ServiceKind::Smile)
        .expect("smile again");
    let (a, b) = (
        reads.service.budget.expect("budget"),
        writes.service.budget.expect("budget"),
    );
    assert!(
        Arc::ptr_eq(&a, &b),
        "a second user of the token gets the same budget"
    );
    assert_eq!(a.description, "10 per second");
    assert!(matches!(reads.service.auth, Auth::Bearer(ref s) if s.expose() == "s3cret"));

    let iterable = services
        .connection(ServiceKind::Iterable)
        .expect("iterable");
    let metrics = iterable
        .with_budget("metrics")
        .budget
        .expect("metrics budget");
    assert_eq!(metrics.description, "10 per minute");
    let again = services
        .connection(ServiceKind::Iterable)
        .expect("iterable")
        .with_budget("metrics")
        .budget
        .expect("metrics budget");
    assert!(Arc::ptr_eq(&metrics, &again));
}

#[test]
fn a_budget_setting_of_zero_turns_the_budget_off() {
    let mut smile = section(&[("api_key", "SMILE_KEY")], &[]);
    smile
        .options
        .insert("requests_per_second", OptionValue::Integer(0));
    let services = services(
        BTreeMap::from([(ServiceKind::Smile, smile)]),
        Overrides::default(),
    );
    let connection = services.connection(ServiceKind::Smile).expect("smile");
    assert!(connection.service.budget.is_none());
}

#[test]
fn overrides_replace_address_and_every_credential_and_config_errors_name_the_key() {
    let dotdigital = section(&[("password", "DD_PASSWORD")], &[("username", "api@acme")]);
    let sections = BTreeMap::from([
        (ServiceKind::Dotdigital, dotdigital),
        (
            ServiceKind::Smile,
            section(&[("api_key", "UNSET_VAR")], &[]),
        ),
    ]);
    let real = services(sections.clone(), Overrides::default());
    let connection = real
        .connection(ServiceKind::Dotdigital)
        .expect("dotdigital");
    assert!(matches!(
        connection.service.auth,
        Auth::Basic { ref user, ref password } if user == "api@acme" && password.expose() == "pw"
    ));
    let missing = real
        .connection(ServiceKind::Smile)
        .expect_err("unset variable");
    assert_eq!(missing.kind(), ErrorKind::Config);
    assert!(missing.to_string().contains("UNSET_VAR"), "{missing}");
    let unconfigured = real
        .connection(ServiceKind::Shopify)
        .expect_err("no section");
    assert!(
        unconfigured.to_string().contains("[sources.shopify]"),
        "{unconfigured}"
    );

    let overrides = Overrides::from_endpoints(
        [
            ("dotdigital", "http://127.0.0.1:9/dotdigital"),
            ("smile", "http://127.0.0.1:9/smile/v1"),
            ("elsewhere", "http://x/"),
        ],
        "local",
    )
    .expect("urls");
    let simulated = services(sections, overrides);
    let connection = simulated
        .connection(ServiceKind::Dotdigital)
        .expect("dotdigital");
    assert_eq!(
        connection.service.base_url.as_str(),
        "http://127.0.0.1:9/dotdigital"
    );
    assert!(matches!(
        connection.service.auth,
        Auth::Basic { ref user, ref password } if user == "local" && password.expose() == "local"
    ));
    let smile = simulated
        .connection(ServiceKind::Smile)
        .expect("no variable needed");
    assert!(matches!(smile.service.auth, Auth::Bearer(ref s) if s.expose() == "local"));
}
