//! The command line as a user runs it: `replay`, `eval`, `rules check`.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn pairwatch(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pairwatch"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pairwatch");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pairwatch-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn threat_lines() -> String {
    [
        common::msg(
            "e1",
            "2026-03-01T20:00:00Z",
            ("u-scam", "ADULT"),
            ("u-teen", "AGE_13_15"),
            "j'ai tout enregistré",
        ),
        common::msg(
            "e2",
            "2026-03-01T20:01:00Z",
            ("u-scam", "ADULT"),
            ("u-teen", "AGE_13_15"),
            "t'as 1h pour payer 200€ sinon j'envoie tout à tes potes",
        ),
    ]
    .join("\n")
}

#[test]
fn replay_writes_alerts_and_reports_bad_lines_with_their_number() {
    let lines = threat_lines().replacen('\n', "\n{\"event_id\":\"oops\"}\nnot json\n", 1);
    let out = pairwatch(&["replay", "-"], &lines);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let alert: serde_json::Value =
        serde_json::from_str(stdout.lines().next().expect("an alert")).unwrap();
    assert_eq!(alert["priority"], "P0");
    assert_eq!(alert["pattern"], "SEXTORTION");
    assert_eq!(alert["respond_by"], "2026-03-01T21:01:00Z");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("line 2: rejected: missing required field `sent_at`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 3: rejected: not valid JSON"),
        "{stderr}"
    );
    assert!(stderr.contains("2 events, 2 rejected"), "{stderr}");
}

#[test]
fn strict_replay_stops_at_the_first_bad_line() {
    let out = pairwatch(&["replay", "--strict"], "{\"event_id\":\"x\"}\n");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("line 1: missing required field `sent_at`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn rules_check_accepts_the_shipped_pack_and_reports_every_error_with_its_line() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let out = pairwatch(&["rules", "check", rules.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok: 2 languages (en, fr)"));

    let dir = temp_dir("badpack");
    std::fs::create_dir_all(dir.join("lexicon")).unwrap();
    std::fs::create_dir_all(dir.join("notices")).unwrap();
    std::fs::write(
        dir.join("lexicon/en.toml"),
        "language = \"en\"\n[categories.SEXTORTION_STUFF]\nphrases = [\"x\"]\n",
    )
    .unwrap();
    std::fs::copy(rules.join("notices/en.toml"), dir.join("notices/en.toml")).unwrap();
    let escalation = std::fs::read_to_string(rules.join("escalation.toml"))
        .unwrap()
        .replacen("priority = \"P1\"", "priority = \"P7\"", 1);
    std::fs::write(dir.join("escalation.toml"), escalation).unwrap();
    let out = pairwatch(&["rules", "check", dir.to_str().unwrap()], "");
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("lexicon/en.toml:2: unknown lexicon category \"SEXTORTION_STUFF\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("escalation.toml:") && stderr.contains("unknown priority \"P7\""),
        "{stderr}"
    );
    assert!(stderr.contains("2 error(s)"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn eval_scores_alerts_against_labels() {
    let dir = temp_dir("eval");
    let quiet = common::msg(
        "q1",
        "2026-03-01T20:00:00Z",
        ("u-a", "AGE_13_15"),
        ("u-b", "AGE_13_15"),
        "on joue ce soir ?",
    );
    std::fs::write(
        dir.join("events.jsonl"),
        format!("{}\n{quiet}\n", threat_lines()),
    )
    .unwrap();
    std::fs::write(
        dir.join("labels.jsonl"),
        "{\"tenant\":\"t\",\"pair\":[\"u-scam\",\"u-teen\"],\"label\":\"POSITIVE\",\"pattern\":\"SEXTORTION\",\"suspect\":\"u-scam\"}\n\
         {\"tenant\":\"t\",\"pair\":[\"u-a\",\"u-b\"],\"label\":\"NEGATIVE\",\"pattern\":null,\"suspect\":null}\n",
    )
    .unwrap();
    let out = pairwatch(
        &[
            "eval",
            "--events",
            dir.join("events.jsonl").to_str().unwrap(),
            "--labels",
            dir.join("labels.jsonl").to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(report.contains("pairs: 1 positive, 1 negative"), "{report}");
    assert!(
        report.contains("P2+            1/1     100.0%      1/1          0/1       0.00%"),
        "{report}"
    );
    assert!(report.contains("median 2 messages"), "{report}");
    let _ = std::fs::remove_dir_all(dir);
}
