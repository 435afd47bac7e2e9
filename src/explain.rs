//! What `baton explain` shows: each pipeline step with its result, and the claims at each
//! stage. A [`Trace`] that is off records nothing and costs a branch per step.

use std::fmt::{self, Write as _};

use serde_json::{Map, Value};

use crate::claim_headers::HeaderTable;
use crate::config::Config;
use crate::policy::{Condition, Undecided};

/// A record of one run of the pipeline.
#[derive(Debug, Default)]
pub struct Trace {
    enabled: bool,
    steps: Vec<Step>,
    claims: Vec<(&'static str, Map<String, Value>)>,
}

/// One step and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The step (`parse`, `select IdP`, `signature`, ...).
    pub name: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// What it found, or why it failed. Never a token or a secret.
    pub detail: String,
}

// === impl Trace ===

impl Trace {
    /// A trace that records.
    pub fn recording() -> Self {
        Self {
            enabled: true,
            ..Self::default()
        }
    }

    /// A trace that records nothing (the hot path).
    pub fn off() -> Self {
        Self::default()
    }

    /// Records a step's outcome; `describe` runs only when recording and the step passed.
    pub fn step<T, E: fmt::Display>(
        &mut self,
        name: &'static str,
        result: &Result<T, E>,
        describe: impl FnOnce(&T) -> String,
    ) {
        if !self.enabled {
            return;
        }
        let (passed, detail) = match result {
            Ok(value) => (true, describe(value)),
            Err(e) => (false, e.to_string()),
        };
        self.steps.push(Step {
            name,
            passed,
            detail,
        });
    }

    /// Records a condition's evaluation: its source, its result, and what it read — the
    /// value of each claim it names (`claims` are the claims it ran over) and `variables`,
    /// a description of its other inputs. Passed only when it held. (Explain is the
    /// operator's tool: sources and claim values may be shown; no token or secret is ever
    /// an input.)
    pub fn condition(
        &mut self,
        name: &'static str,
        condition: &Condition,
        outcome: &Result<bool, Undecided>,
        claims: &Value,
        variables: &str,
    ) {
        if !self.enabled {
            return;
        }
        let result = match outcome {
            Ok(true) => "true".to_owned(),
            Ok(false) => "false".to_owned(),
            Err(why) => format!("undecided ({why}), refused as false"),
        };
        let mut read: Vec<String> = condition
            .claim_paths()
            .iter()
            .map(|path| {
                let value = path
                    .iter()
                    .try_fold(claims, |value, field| value.get(field))
                    .map_or_else(|| "(absent)".to_owned(), shown_value);
                format!("claims.{} = {value}", path.join("."))
            })
            .collect();
        if !variables.is_empty() {
            read.push(variables.to_owned());
        }
        let read = if read.is_empty() {
            String::new()
        } else {
            format!(" (read: {})", read.join(", "))
        };
        self.steps.push(Step {
            name,
            passed: matches!(outcome, Ok(true)),
            detail: format!("`{}` -> {result}{read}", condition.source()),
        });
    }

    /// Records a set of claims under `label`.
    pub fn record_claims(&mut self, label: &'static str, claims: &Map<String, Value>) {
        if self.enabled {
            self.claims.push((label, claims.clone()));
        }
    }

    /// The steps recorded, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The claim sets recorded, in order.
    pub fn claims(&self) -> &[(&'static str, Map<String, Value>)] {
        &self.claims
    }
}

/// The longest claim value a condition step shows, in characters (the claim sets below the
/// steps show every value whole).
const SHOWN_VALUE_CHARS: usize = 80;

/// A claim value as JSON, cut at [`SHOWN_VALUE_CHARS`].
fn shown_value(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(SHOWN_VALUE_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in &self.steps {
            let mark = if step.passed { "ok  " } else { "FAIL" };
            writeln!(f, "  [{mark}] {:<18} {}", step.name, step.detail)?;
        }
        for (label, claims) in &self.claims {
            let pretty = serde_json::to_string_pretty(claims).map_err(|_| fmt::Error)?;
            writeln!(f, "\n{label}:")?;
            for line in pretty.lines() {
                writeln!(f, "  {line}")?;
            }
        }
        Ok(())
    }
}

/// What the proxy would add to a request carrying a token minted for `service`: for the
/// default `[proxy] headers` table and for each route of that service with a table of its own,
/// the claim headers rendered from `payload` (the minted token as the app decodes it), and
/// which routes have a condition (evaluated per request, over `claims` and the request: not
/// shown here, since explain has no request). Values are shown as the app would receive
/// them, percent-encoded; the token itself never is.
pub fn proxy_view(config: &Config, service: &str, payload: &Value) -> String {
    let mut out = String::new();
    let proxy = &config.proxy;
    let mut tables: Vec<(String, &HeaderTable)> = Vec::new();
    if proxy.service.as_deref() == Some(service)
        && let Some(table) = &proxy.headers
    {
        tables.push(("[proxy] headers".to_owned(), table));
    }
    for (index, route) in proxy.routes.iter().enumerate() {
        if route.service.as_deref() != Some(service) {
            continue;
        }
        match &route.headers {
            Some(table) => tables.push((
                format!("proxy.routes[{index}] (prefix {:?}) headers", route.prefix),
                table,
            )),
            None if proxy.service.as_deref() != Some(service) => {
                if let Some(table) = &proxy.headers {
                    tables.push((
                        format!(
                            "proxy.routes[{index}] (prefix {:?}): [proxy] headers",
                            route.prefix
                        ),
                        table,
                    ));
                }
            }
            None => {}
        }
    }
    for (label, table) in tables {
        let (headers, too_long) = table.render(payload);
        let _ = writeln!(out, "\nclaim headers the proxy would send ({label}):");
        if headers.is_empty() && too_long.is_empty() {
            let _ = writeln!(out, "  (none: every path finds nothing)");
        }
        for (name, value) in headers {
            let _ = writeln!(out, "  {name}: {}", String::from_utf8_lossy(&value));
        }
        for name in too_long {
            let _ = writeln!(out, "  {name}: (not sent: longer than 8 KiB once encoded)");
        }
    }
    if !proxy.forward_token {
        let _ = writeln!(
            out,
            "\n[proxy] forward_token = false: the app gets these headers and no Authorization"
        );
    }
    for (index, route) in proxy.routes.iter().enumerate() {
        if route.service.as_deref() == Some(service)
            && let Some(condition) = &route.condition
        {
            let _ = writeln!(
                out,
                "\nproxy.routes[{index}] (prefix {:?}) condition, evaluated per request: `{}`",
                route.prefix,
                condition.source()
            );
        }
    }
    out
}
