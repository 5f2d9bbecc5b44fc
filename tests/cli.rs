//! The command line as a user runs it: `replay`, `eval`, `rules check`.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn pairwatch(args: &[&str], stdin: &str) -> Output {
    pairwatch_bytes(args, stdin.as_bytes())
}

fn pairwatch_bytes(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pairwatch"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pairwatch");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
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
    assert!(text(&out.stdout).contains("ok: 6 languages (de, en, es, fr, it, pt)"));

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

/// JSONL with, between two good lines, a line that is not UTF-8 and a line of `long`
/// bytes.
fn lines_with_bad_bytes(long: usize) -> Vec<u8> {
    let mut lines = threat_lines().into_bytes();
    let second = lines.iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut input = lines[..second].to_vec();
    input.extend_from_slice(b"{\"event_id\":\"e-latin1\",\"text\":\"caf\xe9\"}\n");
    input.extend_from_slice(&vec![b'x'; long]);
    input.push(b'\n');
    input.append(&mut lines.split_off(second));
    input.push(b'\n');
    input
}

#[test]
fn replay_rejects_non_utf8_and_over_long_lines_with_their_number_and_goes_on() {
    // Over the default limit of 1 MiB.
    let out = pairwatch_bytes(&["replay", "-"], &lines_with_bad_bytes(3 << 20));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("line 2: rejected: line is not valid UTF-8 (invalid byte at offset 34)"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "line 3: rejected: line is 3145728 bytes, over the limit of 1048576 (--max-line-bytes)"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("2 events, 2 rejected"), "{stderr}");
    // The events after the bad lines were replayed: the threat is in line 4.
    let alert: serde_json::Value =
        serde_json::from_str(text(&out.stdout).lines().next().expect("an alert")).unwrap();
    assert_eq!(alert["trigger_event_id"], "e2");
    // The limit is an option.
    let out = pairwatch_bytes(
        &["replay", "--max-line-bytes", "100", "-"],
        &lines_with_bad_bytes(101),
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("line 3: rejected: line is 101 bytes, over the limit of 100"),
        "{stderr}"
    );
    // Lines 1 and 4 are over 100 bytes too.
    assert!(stderr.contains("0 events, 4 rejected"), "{stderr}");
}

#[test]
fn strict_replay_stops_at_a_non_utf8_line() {
    let out = pairwatch_bytes(&["replay", "--strict"], &lines_with_bad_bytes(10));
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("line 2: line is not valid UTF-8"),
        "{stderr}"
    );
}

#[test]
fn publish_reports_bad_lines_with_their_number_and_sends_the_rest() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = temp_dir("publish");
    let mut c = pairwatch::config::Config::default();
    c.server.grpc_addr = "127.0.0.1:0".into();
    c.server.http_addr = "127.0.0.1:0".into();
    c.server.data_dir = dir.display().to_string();
    c.shards.count = 1;
    c.durability.fsync = false;
    let server = rt
        .block_on(pairwatch::server::start(c, Default::default()))
        .unwrap();
    let addr = server.grpc_addr.to_string();
    let out = pairwatch_bytes(
        &["publish", "--addr", &addr, "--max-line-bytes", "4096", "-"],
        &lines_with_bad_bytes(5000),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("line 2: not sent: line is not valid UTF-8 (invalid byte at offset 34)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 3: not sent: line is 5000 bytes, over the limit of 4096"),
        "{stderr}"
    );
    assert!(
        stderr.contains("publish: 2 accepted, 2 rejected"),
        "{stderr}"
    );
    rt.block_on(server.stop()).unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn rules_match_shows_what_the_pack_reads_from_classifier_labels() {
    let out = pairwatch(
        &[
            "rules",
            "match",
            "--image-label",
            "nudity=0.93",
            "--image-label",
            "cat=0.99",
            "--hash-match",
            "csam-list",
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "[IMAGE known abuse material, list csam-list] [IMAGE nudity 0.93]\t[MEDIA_SENT NUDE_MEDIA_SENT KNOWN_ABUSE_MATERIAL]\n"
    );
    // Below the pack's threshold: only the media; a text label stands for its category.
    let out = pairwatch(
        &[
            "rules",
            "match",
            "--image-label",
            "nudity=0.3",
            "--label",
            "sexual_minors=0.9",
            "hello there",
        ],
        "",
    );
    let lines = text(&out.stdout);
    let mut lines = lines.lines();
    assert_eq!(lines.next(), Some("[IMAGE]\t[MEDIA_SENT]"));
    let hello = lines.next().unwrap();
    assert!(hello.contains("SEXUALIZATION=label"), "{hello}");
}
