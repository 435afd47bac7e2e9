//! examples/observability: the Prometheus alert rules pass `promtool check rules` and their
//! own `promtool test rules` cases, the Grafana dashboard is well-formed, and every metric the
//! rules and the dashboard read is one the real `baton serve` exports.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::baton::{Baton, reserve_addr};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/observability")
}

fn promtool(args: &[&str]) {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(examples())
        .output()
        .expect("promtool (Debian's prometheus package; scripts/test.sh installs it)");
    assert!(
        output.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_alert_rules_check_and_pass_their_unit_tests() {
    promtool(&["check", "rules", "baton-alerts.yml"]);
    promtool(&["test", "rules", "baton-alerts.test.yml"]);
    promtool(&["check", "config", "prometheus.yml"]);
}

/// The `baton_…` metric names an expression reads.
fn metric_names(expression: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expression.as_bytes();
    let mut i = 0;
    while let Some(found) = expression[i..].find("baton_") {
        let start = i + found;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        names.insert(expression[start..end].to_owned());
        i = end;
    }
    names
}

/// The text of every `expr:` in a rules file (a one-line value, or the more-indented lines
/// of a block after it), without the annotations that mention metrics in prose.
fn rule_expressions(rules: &str) -> String {
    let mut expressions = String::new();
    let mut block_indent = None;
    for line in rules.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(key_indent) = block_indent {
            if indent > key_indent || line.trim().is_empty() {
                expressions.push_str(line);
                expressions.push('\n');
                continue;
            }
            block_indent = None;
        }
        if let Some(value) = line.trim_start().strip_prefix("expr:") {
            expressions.push_str(value);
            expressions.push('\n');
            block_indent = Some(indent);
        }
    }
    expressions
}

/// The sample names of an OpenMetrics text: `name_total` for counters, `_bucket`, `_sum` and
/// `_count` for histograms, the name itself for gauges, from each `# TYPE` line.
fn exported(metrics: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap();
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

fn check_dashboard(dashboard: &Value) -> Vec<String> {
    for key in ["title", "uid"] {
        assert!(dashboard[key].is_string(), "the dashboard has no {key}");
    }
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(variables.contains(&"datasource") && variables.contains(&"instance"));
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 6, "{} panels", panels.len());
    let mut ids = BTreeSet::new();
    let mut expressions = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("a panel without a title");
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "{title}: duplicate id"
        );
        assert!(panel["type"].is_string(), "{title}: no type");
        for key in ["x", "y", "w", "h"] {
            assert!(panel["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
        }
        let x = panel["gridPos"]["x"].as_u64().unwrap();
        let w = panel["gridPos"]["w"].as_u64().unwrap();
        assert!(x + w <= 24, "{title}: wider than the grid");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            assert!(
                target["refId"].is_string(),
                "{title}: a query without refId"
            );
            let expression = target["expr"].as_str().unwrap();
            assert!(
                expression.contains("instance=~\"$instance\""),
                "{title}: a query that ignores the instance variable: {expression}"
            );
            expressions.push(expression.to_owned());
        }
    }
    expressions
}

#[tokio::test]
async fn the_dashboard_and_the_rules_read_only_metrics_baton_exports() {
    let dir = tempfile::tempdir().unwrap();
    let (listen, admin, forward_auth) = (reserve_addr(), reserve_addr(), reserve_addr());
    let config = format!(
        r#"
[forward_auth]
listen = "{forward_auth}"
original_request = "x-forwarded"

[proxy]
listen = "{listen}"
upstream = "127.0.0.1:9"
service = "app"

[admin]
listen = "{admin}"

[[keys]]
id = "sbk_obs"
algorithm = "HS256"
secret = "sbsec_observability_test_secret"

[[idps]]
issuer = "https://idp.observability.test"
audience = "app"
jwks_url = "http://127.0.0.1:9/jwks.json"
mapping = {{ "sub.$" = "$.sub" }}

[[token_providers]]
service = "app"
key = "sbk_obs"
mapping = {{ "sub.$" = "$.sub" }}
"#
    );
    let baton = Baton::launch(dir.path(), listen, &config).start().await;
    // Every family shows once it has a series: a refused token through the proxy (a
    // proxied request, an exchange) and through forward-auth, a reload.
    let client = reqwest::Client::new();
    let bad = "Bearer not.a.token";
    let proxied = client.get(baton.url("/x")).header("authorization", bad);
    assert_eq!(proxied.send().await.unwrap().status(), 401);
    let checked = client
        .get(format!("http://{forward_auth}/"))
        .header("authorization", bad)
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", "/x");
    assert_eq!(checked.send().await.unwrap().status(), 401);
    baton.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let metrics = loop {
        let metrics = reqwest::get(format!("http://{admin}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("baton_config_reloads_total") {
            break metrics;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no reload counted:\n{metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let exported = exported(&metrics);

    let dashboard: Value =
        serde_json::from_slice(&std::fs::read(examples().join("grafana-dashboard.json")).unwrap())
            .unwrap();
    let mut read = BTreeSet::new();
    for expression in check_dashboard(&dashboard) {
        read.extend(metric_names(&expression));
    }
    let rules = std::fs::read_to_string(examples().join("baton-alerts.yml")).unwrap();
    read.extend(metric_names(&rule_expressions(&rules)));
    for name in [
        "baton_exchanges_total",
        "baton_exchange_duration_seconds_bucket",
        "baton_cache_lookups_total",
        "baton_jwks_fetches_total",
        "baton_config_reloads_total",
        "baton_upstream_duration_seconds_bucket",
    ] {
        assert!(read.contains(name), "nothing reads {name}");
    }
    let unknown: Vec<&String> = read.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "read but not exported: {unknown:?}\nexported: {exported:?}"
    );
}
