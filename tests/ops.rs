//! The deployment files agree with the code: the dashboard and the Prometheus rules
//! query metrics the service exports; the environment of the compose file and of the
//! Kubernetes manifests is a valid configuration; ports and topics match. (The files are
//! also checked by real tools in `scripts/ops-check.sh`: promtool, kubernetes-validate,
//! docker-compose.)

use pairwatch::config::Config;
use pairwatch::metrics::Metrics;
use std::collections::BTreeSet;
use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `pairwatch_...` or `pairwatch:...` metric name a text mentions.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("pairwatch") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] == b':')
        {
            end += 1;
        }
        let name = &text[start..end];
        if name.starts_with("pairwatch_") || name.starts_with("pairwatch:") {
            names.insert(name.trim_end_matches(':').to_string());
        }
        i = end.max(start + 1);
    }
    names
}

/// The names a query may use: the exported families, histogram series, recording rules.
fn known_names() -> BTreeSet<String> {
    let mut known = BTreeSet::new();
    for n in Metrics::new().names {
        for suffix in ["", "_bucket", "_sum", "_count"] {
            known.insert(format!("{n}{suffix}"));
        }
    }
    for line in read("deploy/prometheus/rules.yml").lines() {
        if let Some(r) = line.trim().strip_prefix("- record:") {
            known.insert(r.trim().to_string());
        }
    }
    known
}

#[test]
fn the_dashboard_queries_only_metrics_that_exist() {
    let dashboard = read("deploy/grafana/dashboards/pairwatch.json");
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("valid JSON");
    let mut exprs = String::new();
    for p in json["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push_str(t["expr"].as_str().unwrap());
            exprs.push('\n');
        }
    }
    let used = metric_names(&exprs);
    let known = known_names();
    let unknown: Vec<_> = used.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "dashboard queries unknown metrics: {unknown:?}"
    );
    // What SREs asked for is on it.
    for needed in [
        "pairwatch_ingest_events_total",
        "pairwatch_alerts_raised_total",
        "pairwatch_alerts_event_to_alert_seconds_bucket",
        "pairwatch_kafka_consumer_lag_records",
        "pairwatch_kafka_dead_letters_total",
        "pairwatch_state_pairs",
        "pairwatch_moderation_decisions_total",
        "pairwatch:rule_precision:ratio1d",
    ] {
        assert!(used.contains(needed), "dashboard lacks {needed}");
    }
}

#[test]
fn the_prometheus_rules_use_only_metrics_that_exist() {
    let rules = read("deploy/prometheus/rules.yml");
    let known = known_names();
    let used = metric_names(&rules);
    let unknown: Vec<_> = used.difference(&known).collect();
    assert!(unknown.is_empty(), "rules use unknown metrics: {unknown:?}");
    let runbook = read("docs/RUNBOOK.md").to_lowercase();
    for line in rules.lines() {
        if let Some(alert) = line.trim().strip_prefix("- alert:") {
            let anchor = alert.trim().to_lowercase();
            assert!(
                runbook.contains(&format!("## {anchor}")),
                "docs/RUNBOOK.md has no section for {anchor}"
            );
        }
    }
}

/// `PAIRWATCH__...: value` lines of a YAML file (a mapping of environment variables).
fn env_lines(yaml: &str) -> Vec<(String, String)> {
    yaml.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(':')?;
            k.starts_with("PAIRWATCH__").then(|| {
                let v = v.trim().trim_matches('"').to_string();
                (k.to_string(), v)
            })
        })
        .collect()
}

#[test]
fn deployment_environments_are_valid_configurations() {
    for file in [
        "docker-compose.yml",
        "deploy/kubernetes/configmap.yaml",
        "deploy/kubernetes/secret.yaml",
    ] {
        let vars = env_lines(&read(file));
        assert!(!vars.is_empty(), "{file} sets no PAIRWATCH__ variable");
        // Directories named in the files exist only in the image.
        let vars: Vec<_> = vars
            .into_iter()
            .filter(|(k, _)| k != "PAIRWATCH__ENGINE__RULES_DIR")
            .collect();
        if let Err(e) = Config::load(None, vars) {
            panic!("{file}: {e}");
        }
    }
    // The Kubernetes pods get the ConfigMap and the Secret together.
    let mut both = env_lines(&read("deploy/kubernetes/configmap.yaml"));
    both.extend(env_lines(&read("deploy/kubernetes/secret.yaml")));
    let c = Config::load(None, both).unwrap();
    assert!(c.kafka.enabled() && c.kafka.exactly_once());
    assert!(c.kafka.client.contains_key("sasl.password"));
    assert!(
        !c.show().contains("change-me-admin-token"),
        "secrets masked"
    );
}

#[test]
fn ports_and_topics_agree_across_the_files() {
    let dockerfile = read("Dockerfile");
    let compose = read("docker-compose.yml");
    let k8s =
        read("deploy/kubernetes/statefulset.yaml") + &read("deploy/kubernetes/configmap.yaml");
    let prometheus = read("deploy/prometheus/prometheus.yml");
    for port in ["50051", "9464"] {
        assert!(
            dockerfile.contains(&format!("0.0.0.0:{port}")),
            "Dockerfile listens on {port}"
        );
        assert!(
            compose.contains(&format!("\"{port}:{port}\"")),
            "compose publishes {port}"
        );
        assert!(
            k8s.contains(&format!("containerPort: {port}")),
            "pods expose {port}"
        );
    }
    assert!(dockerfile.contains("EXPOSE 50051 9464"));
    assert!(prometheus.contains("pairwatch:9464"));
    assert!(dockerfile.contains("/readyz"));
    // The compose stack creates the topics the configuration defaults name.
    let k = Config::default().kafka;
    for topic in [
        &k.events_topic,
        &k.alerts_topic,
        &k.dlq_topic,
        &k.changelog(),
    ] {
        assert!(compose.contains(topic.as_str()), "compose creates {topic}");
    }
    assert!(compose.contains("--topic pairwatch.pair-state"));
    assert!(compose.contains("cleanup.policy=compact"));
}
