//! `docs/reference.md` and the config reader agree: for every table of the configuration
//! the reference documents under a `### ` heading, the keys in its tables' first column are
//! exactly the keys the reader accepts there — read from the reader itself, which names
//! every valid key when it meets an unknown one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each documented table: the reference's heading, and a config that puts the probe key
/// `zz_probe` in that table (the rest valid). A heading probed more than once (a warehouse
/// type, a destination) documents the union.
const PROBES: &[(&str, &str)] = &[
    ("Top level", "zz_probe = 1\n"),
    (
        "`[warehouse]`",
        "[warehouse]\ntype = \"local\"\nzz_probe = 1\n",
    ),
    (
        "`[warehouse]`",
        "[warehouse]\ntype = \"bigquery\"\nproject = \"p\"\ndataset = \"d\"\ncredentials_file = \"k.json\"\nzz_probe = 1\n",
    ),
    ("`[sandbox]`", "[sandbox]\nzz_probe = 1\n"),
    ("`[scheduler]`", "[scheduler]\nzz_probe = 1\n"),
    ("`[server]`", "[server]\nzz_probe = 1\n"),
    (
        "`[sources.smile]`",
        "[sources.smile]\napi_key = \"${K}\"\nzz_probe = 1\n",
    ),
    (
        "`[sources.shopify]`",
        "[sources.shopify]\nshop = \"a.myshopify.com\"\naccess_token = \"${K}\"\nzz_probe = 1\n",
    ),
    (
        "`[sources.smartrmail]`",
        "[sources.smartrmail]\napi_token = \"${K}\"\nzz_probe = 1\n",
    ),
    (
        "`[sources.iterable]`",
        "[sources.iterable]\napi_key = \"${K}\"\nzz_probe = 1\n",
    ),
    (
        "`[sources.dotdigital]`",
        "[sources.dotdigital]\nusername = \"u\"\npassword = \"${K}\"\nzz_probe = 1\n",
    ),
    (
        "`[destinations.sheets]`",
        "[destinations.sheets]\nspreadsheet_id = \"s\"\ncredentials_file = \"k.json\"\nzz_probe = 1\n",
    ),
    (
        "`[destinations.slack]`",
        "[destinations.slack]\nbot_token = \"${K}\"\nzz_probe = 1\n",
    ),
    (
        "`[[jobs]]`",
        "[[jobs]]\nname = \"j\"\nschedule = \"@daily\"\nsteps = []\nzz_probe = 1\n",
    ),
    (
        "Step `extract`",
        "[sources.smile]\napi_key = \"${K}\"\n[[jobs]]\nname = \"j\"\nschedule = \"@daily\"\nsteps = [{ type = \"extract\", source = \"smile\", zz_probe = 1 }]\n",
    ),
    (
        "Step `sql`",
        "[[jobs]]\nname = \"j\"\nschedule = \"@daily\"\nsteps = [{ type = \"sql\", file = \"reports/weekly_email_performance.sql\", zz_probe = 1 }]\n",
    ),
    (
        "Step `deliver`",
        "[destinations.slack]\nbot_token = \"${K}\"\n[[jobs]]\nname = \"j\"\nschedule = \"@daily\"\nsteps = [{ type = \"sql\", file = \"reports/weekly_email_performance.sql\", name = \"w\" }, { type = \"deliver\", from = \"w\", to = \"slack\", channel = \"#m\", zz_probe = 1 }]\n",
    ),
    (
        "Step `deliver`",
        "[destinations.sheets]\nspreadsheet_id = \"s\"\ncredentials_file = \"k.json\"\n[[jobs]]\nname = \"j\"\nschedule = \"@daily\"\nsteps = [{ type = \"sql\", file = \"reports/weekly_email_performance.sql\", name = \"w\" }, { type = \"deliver\", from = \"w\", to = \"sheets\", sheet = \"W\", zz_probe = 1 }]\n",
    ),
    (
        "Step `activate`",
        "[sources.smartrmail]\napi_token = \"${K}\"\n[[jobs]]\nname = \"j\"\nschedule = \"@daily\"\nsteps = [{ type = \"sql\", file = \"queries/lapsed_customers.sql\", name = \"l\" }, { type = \"activate\", from = \"l\", platform = \"smartrmail\", sequence = \"s\", zz_probe = 1 }]\n",
    ),
    (
        "Step `loyalty_sync`",
        "[sources.smartrmail]\napi_token = \"${K}\"\n[[jobs]]\nname = \"j\"\nschedule = \"@daily\"\nsteps = [{ type = \"loyalty_sync\", platform = \"smartrmail\", zz_probe = 1 }]\n",
    ),
    (
        "Step `compact`",
        "[[jobs]]\nname = \"j\"\nschedule = \"@daily\"\nsteps = [{ type = \"compact\", zz_probe = 1 }]\n",
    ),
];

/// The keys the reader accepts in the table `text` probes.
fn accepted(text: &str) -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let errors = match mailroom::config::parse(text, "config.toml", root) {
        Ok(_) => panic!("the probe was accepted: {text}"),
        Err(mailroom::config::LoadError::Invalid(errors)) => errors,
        Err(other) => panic!("{other}"),
    };
    let probe = errors
        .0
        .iter()
        .find(|e| e.key.ends_with("zz_probe"))
        .unwrap_or_else(|| panic!("no unknown-key error for the probe: {errors}"));
    let help = probe.help.clone().unwrap_or_default();
    let list = help
        .split("valid keys here: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no key list in {help:?}"));
    list.split(", ").map(str::to_string).collect()
}

/// The reference's keys per `### ` heading: the first column of its tables.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference.md"))
            .expect("docs/reference.md");
    let mut sections: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current = None;
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("### ") {
            current = Some(heading.trim().to_string());
            sections.entry(heading.trim().to_string()).or_default();
            continue;
        }
        if line.starts_with("## ") {
            current = None;
            continue;
        }
        let (Some(section), Some(cell)) = (&current, line.strip_prefix("| `")) else {
            continue;
        };
        if let Some(key) = cell.split('`').next() {
            sections
                .get_mut(section)
                .expect("section")
                .insert(key.to_string());
        }
    }
    sections
}

#[test]
fn the_reference_documents_exactly_the_keys_the_config_reader_accepts() {
    let docs = documented();
    let mut readers: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (heading, probe) in PROBES {
        readers.entry(heading).or_default().extend(accepted(probe));
    }
    let mut problems = Vec::new();
    for (heading, reader) in &readers {
        let reader = reader.clone();
        let Some(documented) = docs.get(*heading) else {
            problems.push(format!(
                "docs/reference.md has no `### {heading}` section (the reader accepts {reader:?})"
            ));
            continue;
        };
        let missing: Vec<&String> = reader.difference(documented).collect();
        let extra: Vec<&String> = documented.difference(&reader).collect();
        if !missing.is_empty() {
            problems.push(format!(
                "{heading}: accepted but not documented: {missing:?}"
            ));
        }
        if !extra.is_empty() {
            problems.push(format!("{heading}: documented but not accepted: {extra:?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
