//! What a careless user hands mailroom, generated deterministically: mutants of the shipped
//! `config.toml` (lines deleted, duplicated, cut short; values of the wrong type; unknown
//! keys; huge numbers; invalid UTF-8; empty; megabytes) through `check`, broken and hostile
//! SQL through `check` and `query`, and a reader that closes stdout early on every command
//! that prints. Each must end with its documented exit code and a located message — never
//! a panic, an abort or a hang.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::{mailroom, write_config};

/// Runs `cmd` to completion or panics after `limit` (a hang); exit code and all output.
fn run_bounded(cmd: &mut Command, limit: Duration) -> (i32, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let mut bytes = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut bytes);
        text.push_str(&String::from_utf8_lossy(&bytes));
        bytes.clear();
        let _ = std::io::Read::read_to_end(&mut err, &mut bytes);
        text.push_str(&String::from_utf8_lossy(&bytes));
        text
    });
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let text = reader.join().expect("output");
            return (status.code().unwrap_or(-1), text);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Deterministic mutants of `config`, each with a name saying what was done.
fn config_mutants(config: &str) -> Vec<(String, Vec<u8>)> {
    let lines: Vec<&str> = config.lines().collect();
    let join = |lines: &[&str]| lines.join("\n").into_bytes();
    let meaningful: Vec<usize> = (0..lines.len())
        .filter(|&i| {
            let t = lines[i].trim();
            !t.is_empty() && !t.starts_with('#')
        })
        .collect();
    let mut mutants = Vec::new();
    for &i in &meaningful {
        let mut copy = lines.clone();
        copy.remove(i);
        mutants.push((format!("line {} deleted", i + 1), join(&copy)));
    }
    for &i in meaningful.iter().step_by(6) {
        let mut copy = lines.clone();
        copy.insert(i, lines[i]);
        mutants.push((format!("line {} duplicated", i + 1), join(&copy)));
    }
    for cut in (1..10).map(|n| config.len() * n / 10) {
        let cut = (0..=cut)
            .rev()
            .find(|&c| config.is_char_boundary(c))
            .unwrap_or(0);
        mutants.push((
            format!("cut at byte {cut}"),
            config.as_bytes()[..cut].to_vec(),
        ));
    }
    let assignments: Vec<usize> = meaningful
        .iter()
        .copied()
        .filter(|&i| lines[i].contains(" = ") && !lines[i].trim_start().starts_with('['))
        .collect();
    for (n, &i) in assignments.iter().enumerate().step_by(3) {
        let (key, value) = lines[i].split_once(" = ").expect("assignment");
        let value = value.trim();
        let replacements: &[&str] = match n % 4 {
            0 => &["\"seven\"", "[1, 2]"],
            1 => &["99999999999999999999999", "-1"],
            2 => &["true", "{ a = 1 }"],
            _ => &["12.5", "\"\""],
        };
        for wrong in replacements {
            if *wrong == value {
                continue;
            }
            let mut copy = lines.clone();
            let line = format!("{key} = {wrong}");
            copy[i] = &line;
            mutants.push((format!("line {}: {key} = {wrong}", i + 1), join(&copy)));
        }
    }
    for (n, &i) in lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with('['))
        .map(|(i, _)| i)
        .collect::<Vec<_>>()
        .iter()
        .enumerate()
        .step_by(2)
    {
        let mut copy = lines.clone();
        copy.insert(i + 1, "colour_scheme = \"blue\"");
        mutants.push((format!("unknown key {n} after line {}", i + 1), join(&copy)));
    }
    let mut invalid = config.as_bytes().to_vec();
    let at = config.find("seed = 42").expect("the seed line") + 7;
    invalid.insert(at, 0xFF);
    mutants.push(("a byte that is not UTF-8".into(), invalid));
    mutants.push(("empty".into(), Vec::new()));
    mutants.push(("only a NUL byte".into(), vec![0]));
    let mut huge_comment = config.to_string();
    huge_comment.push_str(&format!("\n# {}\n", "x".repeat(4 << 20)));
    mutants.push(("a 4 MB comment".into(), huge_comment.into_bytes()));
    let huge_value = config.replacen(
        "seed = 42",
        &format!("seed = 42\nnote = \"{}\"", "y".repeat(4 << 20)),
        1,
    );
    mutants.push(("a 4 MB unknown value".into(), huge_value.into_bytes()));
    let deep = format!(
        "{}\nx = {}1{}\n",
        config,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    mutants.push(("5000 nested arrays".into(), deep.into_bytes()));
    mutants
}

#[test]
fn config_mutants_exit_0_or_78_with_a_location_never_a_panic_or_a_hang() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), mailroom::config::DEFAULT_CONFIG);
    let mutants = config_mutants(mailroom::config::DEFAULT_CONFIG);
    assert!(mutants.len() > 150, "{} mutants", mutants.len());
    let mut refused = 0;
    for (name, bytes) in &mutants {
        std::fs::write(dir.path().join("config.toml"), bytes).expect("mutant");
        let (code, text) = run_bounded(mailroom(dir.path()).arg("check"), Duration::from_secs(60));
        assert!(
            !text.contains("panicked") && !text.contains("overflow"),
            "{name}: {text}"
        );
        match code {
            0 => {}
            78 => {
                refused += 1;
                assert!(
                    text.lines().any(|l| has_location(l, "config.toml")),
                    "{name}: no config.toml:LINE location in\n{text}"
                );
            }
            other => panic!("{name}: exit {other}\n{text}"),
        }
    }
    assert!(
        refused > mutants.len() / 2,
        "{refused} of {} refused",
        mutants.len()
    );
}

/// Whether `line` names `file:LINE` (with a line number from 1).
fn has_location(line: &str, file: &str) -> bool {
    line.split(&format!("{file}:")).skip(1).any(|rest| {
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n > 0)
    })
}

/// A data directory with the shipped config and the loyalty tables extracted.
fn loyalty_loaded() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), mailroom::config::DEFAULT_CONFIG);
    let (code, text) = run_bounded(
        mailroom(dir.path()).args(["run-job", "extract-loyalty"]),
        Duration::from_secs(300),
    );
    assert_eq!(code, 0, "{text}");
    dir
}

/// SQL a user could write in `queries/`: each `(name, text)`.
fn sql_mutants() -> Vec<(&'static str, String)> {
    vec![
        ("syntax error", "SELEC email FROM smile_customers".into()),
        ("unclosed string", "SELECT 'abc FROM smile_customers".into()),
        ("unknown table", "SELECT * FROM no_such_table".into()),
        ("unknown function", "SELECT NO_SUCH_FN(1) AS x".into()),
        (
            "unknown column",
            "SELECT no_such_column FROM smile_customers".into(),
        ),
        ("two statements", "SELECT 1 AS a; SELECT 2 AS b".into()),
        ("DROP TABLE", "DROP TABLE smile_customers".into()),
        (
            "INSERT",
            "INSERT INTO smile_customers (email) VALUES ('a@b.c')".into(),
        ),
        (
            "a NUL byte",
            "SELECT 1 AS a\u{0} FROM smile_customers".into(),
        ),
        ("template error", "SELECT {{ no_such_var }} AS a".into()),
        ("unclosed template", "SELECT {{ now AS a".into()),
        ("unknown ref", "SELECT * FROM {{ ref('nope') }}".into()),
        ("empty", String::new()),
        ("only a comment", "-- nothing here".into()),
        (
            "20,000 OR terms",
            format!(
                "SELECT 1 AS a FROM smile_customers WHERE {}",
                vec!["email = 'x'"; 20_000].join(" OR ")
            ),
        ),
        (
            "30,000 + terms",
            format!("SELECT {} AS n", vec!["1"; 30_000].join(" + ")),
        ),
        (
            "nesting 3,000 parentheses deep",
            format!("SELECT {}1{} AS n", "(".repeat(3_000), ")".repeat(3_000)),
        ),
        (
            "nesting 500 subqueries deep",
            format!(
                "SELECT n FROM {}(SELECT 1 AS n){} ",
                "(SELECT n FROM ".repeat(500),
                " AS t)".repeat(500)
            ),
        ),
    ]
}

#[test]
fn broken_and_hostile_sql_is_refused_with_a_location_never_a_crash() {
    let dir = loyalty_loaded();
    let queries = dir.path().join("queries");
    for (name, sql) in sql_mutants() {
        let file = queries.join("mutant.sql");
        std::fs::write(&file, format!("-- title = \"Mutant\"\n{sql}\n")).expect("sql");
        for args in [&["check"][..], &["query", "queries/mutant.sql"][..]] {
            let (code, text) =
                run_bounded(mailroom(dir.path()).args(args), Duration::from_secs(300));
            assert!(
                !text.contains("panicked") && !text.contains("overflow") && code >= 0,
                "{name} via {args:?}: exit {code}\n{text}"
            );
            assert!(
                matches!(code, 0 | 1 | 78),
                "{name} via {args:?}: exit {code}\n{text}"
            );
            if code == 78 && args[0] == "check" {
                assert!(
                    text.lines().any(|l| has_location(l, "mutant.sql")),
                    "{name}: check names the file and line\n{text}"
                );
            }
        }
        std::fs::remove_file(&file).expect("cleanup");
    }
}

/// Every command that prints, its reader gone after the first line (`| head -1`): exit 0,
/// nothing on stderr about the pipe.
#[cfg(unix)]
#[test]
fn every_command_that_prints_ends_quietly_when_its_reader_goes_away() {
    use std::io::{BufRead, BufReader};
    let dir = loyalty_loaded();
    let commands: &[&[&str]] = &[
        &["jobs", "--next", "3000"],
        &["status", "--limit", "500"],
        &["check"],
        &[
            "query",
            "SELECT email, points_balance FROM smile_customers",
            "--format",
            "csv",
        ],
        &[
            "query",
            "SELECT email FROM smile_customers",
            "--format",
            "json",
        ],
        &["run-job", "extract-loyalty"],
        &["run-job", "loyalty-report", "--dry-run"],
        &["--help"],
    ];
    for args in commands {
        let mut child = mailroom(dir.path())
            .args(*args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("one line");
        // The reading end is closed here, as `head -1` closes it.
        let output = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!first.is_empty(), "{args:?} printed nothing");
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
    }
}
