//! The deployment recipes agree with mailroom: the systemd unit's command line is one the
//! real binary accepts and gives SIGTERM's grace time to work; the container runs as a
//! non-root user with the data directory as a volume and the shipped SQL beside the config.

use std::path::Path;

fn recipe(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy")
            .join(name),
    )
    .expect("recipe")
}

#[test]
fn the_systemd_unit_runs_a_command_line_mailroom_accepts_and_waits_out_the_grace() {
    let unit = recipe("mailroom.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let args: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(args[0], "/usr/local/bin/mailroom");
    assert_eq!(args.last(), Some(&"run"));
    // The same options, with `check` instead of `run`, on the real binary and the shipped
    // config: clap and the config reader accept them.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().display().to_string();
    let options: Vec<&str> = args[1..args.len() - 1]
        .iter()
        .map(|a| match *a {
            "/etc/mailroom/config.toml" => "config.toml",
            "/var/lib/mailroom" => data.as_str(),
            other => other,
        })
        .collect();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .env_clear()
        .args(&options)
        .arg("check")
        .output()
        .expect("mailroom runs");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let grace = mailroom::config::parse(
        mailroom::config::DEFAULT_CONFIG,
        "config.toml",
        Path::new("."),
    )
    .expect("shipped config")
    .scheduler
    .shutdown_grace
    .as_secs();
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.parse().ok())
        .expect("TimeoutStopSec");
    assert!(
        stop > grace,
        "systemd must wait longer than the grace ({grace} s): {stop}"
    );
    assert!(unit.contains("KillSignal=SIGTERM") && unit.contains("Restart=on-failure"));
    assert!(
        unit.contains("RestartPreventExitStatus=78"),
        "config errors are not retried"
    );
}

#[test]
fn the_container_runs_as_a_user_with_the_data_directory_as_a_volume() {
    let dockerfile = recipe("Dockerfile");
    assert!(dockerfile.contains("USER mailroom"));
    assert!(dockerfile.contains("VOLUME [\"/var/lib/mailroom\"]"));
    assert!(dockerfile.contains("--data-dir\", \"/var/lib/mailroom\""));
    for folder in ["reports", "queries"] {
        assert!(
            dockerfile.contains(&format!("COPY {folder} /etc/mailroom/{folder}")),
            "{folder}"
        );
        assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join(folder).is_dir());
    }
    assert!(dockerfile.contains("cargo build --release --locked"));
}
