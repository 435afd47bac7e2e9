//! The config loader: `Config::from_toml` on arbitrary text (TOML syntax, the spec structs,
//! every validation rule, the mappings in it), with no environment and `*_file` paths
//! resolved against `fuzz/fixtures/`.
//!
//! Besides never panicking or overflowing, a config's secrets must never show: not in an
//! error, not in a warning, not in the `Debug` of the validated config (it may be logged).

#![no_main]

use std::path::Path;

use baton::config::Config;
use libfuzzer_sys::fuzz_target;
use toml::Value;

/// A secret this short could be part of any text (an error naming a key, a number).
const MIN_SECRET_LEN: usize = 12;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let base_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let result = Config::from_toml(source, &base_dir, &|_| None);

    let secrets = inline_secrets(source);
    let shown = match &result {
        Ok(config) => format!("{config:?}\n{}", config.warnings.join("\n")),
        Err(errors) => errors.to_string(),
    };
    for secret in &secrets {
        assert!(
            !shown.contains(secret.as_str()),
            "a secret shows in the loader's output: {shown}"
        );
    }
});

/// The inline secrets of `source`, as a TOML parser other than the loader's reads them (when
/// `source` is valid TOML): every `secret` (HMAC keys, client secrets) and an IdP's `key`
/// unless it is a public PEM or JWK. A value that appears in `source` more than once is left
/// out: it may be the text of another setting too (an issuer, a name) and show as that.
fn inline_secrets(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(table) = source.parse::<toml::Table>() {
        for (section, value) in &table {
            collect(value, section, None, &mut found);
        }
    }
    found.retain(|s| s.trim().len() >= MIN_SECRET_LEN && source.matches(s.as_str()).count() == 1);
    found
}

fn collect(value: &Value, section: &str, key: Option<&str>, found: &mut Vec<String>) {
    match value {
        Value::String(s) => {
            let is_secret = match key {
                Some("secret") => true,
                Some("key") => section == "idps" && !s.trim_start().starts_with(['-', '{']),
                _ => false,
            };
            if is_secret {
                found.push(s.clone());
            }
        }
        Value::Table(table) => {
            for (k, v) in table {
                collect(v, section, Some(k), found);
            }
        }
        Value::Array(items) => {
            for item in items {
                collect(item, section, key, found);
            }
        }
        _ => {}
    }
}
