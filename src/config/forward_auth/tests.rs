//! `[forward_auth]`: where the original request is read, `path_prefix`, and when the proxy
//! listener runs beside it.

use std::path::Path;

use crate::config::{Config, ConfigError, ConfigErrors, OriginalRequest};

const BASE: &str = r#"
[server]
issuer = "https://baton.example.com"

SECTIONS

[[keys]]
id = "sbk_main"
algorithm = "HS256"
secret = "sbsec_test_secret_value_long_enough"

[[idps]]
issuer = "https://idp.example.com/"
audience = "app"
jwks_url = "https://idp.example.com/jwks.json"
mapping = { "sub.$" = "$.sub" }

[[token_providers]]
service = "app"
key = "sbk_main"
mapping = { "sub.$" = "$.sub" }
"#;

fn load(sections: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml(&BASE.replace("SECTIONS", sections), Path::new("."), &|_| {
        None
    })
}

fn errors(sections: &str) -> Vec<ConfigError> {
    match load(sections) {
        Ok(_) => panic!("expected errors"),
        Err(ConfigErrors(errors)) => errors,
    }
}

fn assert_error(errors: &[ConfigError], path: &str, needle: &str) {
    assert!(
        errors
            .iter()
            .any(|e| e.path == path && e.message.contains(needle)),
        "no error at {path} containing {needle:?} in:\n{}",
        ConfigErrors(errors.to_vec())
    );
}

#[test]
fn each_convention_loads_and_the_default_listener_is_loopback() {
    for (spelling, expected) in [
        ("x-forwarded", OriginalRequest::ForwardedHeaders),
        ("x-original", OriginalRequest::OriginalHeaders),
        ("request-line", OriginalRequest::RequestLine),
    ] {
        let config = load(&format!(
            "[forward_auth]\noriginal_request = \"{spelling}\"\n[proxy]\nservice = \"app\""
        ))
        .unwrap();
        let forward_auth = config.forward_auth.unwrap();
        assert_eq!(forward_auth.original_request, expected);
        assert_eq!(forward_auth.listen.to_string(), "127.0.0.1:8090");
    }
}

#[test]
fn the_convention_must_be_named_never_guessed() {
    let missing = errors("[forward_auth]\nlisten = \"127.0.0.1:9000\"");
    assert_error(&missing, "forward_auth.original_request", "required");
    let unknown = errors("[forward_auth]\noriginal_request = \"auto\"");
    assert_error(
        &unknown,
        "forward_auth.original_request",
        "unknown value \"auto\"",
    );
}

#[test]
fn path_prefix_is_for_the_request_line_and_must_be_normal() {
    let config =
        load("[forward_auth]\noriginal_request = \"request-line\"\npath_prefix = \"/authz\"")
            .unwrap();
    assert_eq!(
        config.forward_auth.unwrap().path_prefix.as_deref(),
        Some("/authz")
    );
    let headers = errors("[forward_auth]\noriginal_request = \"x-original\"\npath_prefix = \"/a\"");
    assert_error(&headers, "forward_auth.path_prefix", "request-line");
    for bad in ["authz", "/authz/", "/a/../b", "/a//b"] {
        let errors = errors(&format!(
            "[forward_auth]\noriginal_request = \"request-line\"\npath_prefix = \"{bad}\""
        ));
        assert_error(&errors, "forward_auth.path_prefix", "normalized path");
    }
}

#[test]
fn the_proxy_listener_runs_only_when_proxy_asks_for_it_beside_forward_auth() {
    let forward_auth = "[forward_auth]\noriginal_request = \"x-forwarded\"\n";
    // Routing keys alone: forward-auth only.
    let decide_only = load(&format!("{forward_auth}[proxy]\nservice = \"app\"")).unwrap();
    assert_eq!(decide_only.proxy.listen, None);
    assert_eq!(decide_only.proxy.service.as_deref(), Some("app"));
    // No `[proxy]` at all is valid too.
    assert_eq!(load(forward_auth).unwrap().proxy.listen, None);
    for proxy in [
        "upstream = \"127.0.0.1:3000\"",
        "listen = \"127.0.0.1:8081\"",
    ] {
        let both = load(&format!("{forward_auth}[proxy]\n{proxy}")).unwrap();
        assert!(both.proxy.listen.is_some(), "{proxy}");
    }
    // Without `[forward_auth]`, the proxy listener runs as it always did.
    assert_eq!(
        load("")
            .unwrap()
            .proxy
            .listen
            .map(|a| a.to_string())
            .as_deref(),
        Some("0.0.0.0:8080")
    );
}

#[test]
fn unknown_keys_are_refused() {
    let errors = errors("[forward_auth]\noriginal_request = \"x-forwarded\"\nupstream = \"x\"");
    assert_error(&errors, "forward_auth", "unknown field");
}
