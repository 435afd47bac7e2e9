//! `[proxy] headers`, `forward_token` and `[[proxy.routes]] condition`/`headers`.

use std::path::Path;

use crate::config::{Config, ConfigError, ConfigErrors};

const BASE: &str = r#"
[server]
issuer = "https://baton.example.com"

[proxy]
upstream = "127.0.0.1:3000"
service = "app"
PROXY

ROUTES

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

fn source(proxy: &str, routes: &str) -> String {
    BASE.replace("PROXY", proxy).replace("ROUTES", routes)
}

fn load(proxy: &str, routes: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml(&source(proxy, routes), Path::new("."), &|_| None)
}

fn errors(proxy: &str, routes: &str) -> Vec<ConfigError> {
    match load(proxy, routes) {
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
fn headers_forward_token_and_route_policy_load() {
    let config = load(
        r#"headers = { "x-user-id.$" = "$.act.sub", "x-tenant" = "acme" }
forward_token = false"#,
        r#"
[[proxy.routes]]
prefix = "/admin"
service = "app"
condition = 'request.method == "GET" && claims.act.sub == "alice"'
headers = { "x-admin.$" = "$.act.sub" }

[[proxy.routes]]
prefix = "/public"
skip = true
"#,
    )
    .unwrap();
    let proxy = &config.proxy;
    assert!(!proxy.forward_token);
    let names: Vec<&str> = proxy.headers.as_ref().unwrap().names().collect();
    assert_eq!(names, ["x-tenant", "x-user-id"]);
    assert!(proxy.routes[0].condition.is_some());
    assert!(proxy.routes[1].condition.is_none());
    assert_eq!(
        proxy.claim_header_names,
        ["x-admin", "x-tenant", "x-user-id"]
    );
    // The defaults.
    let config = load("", "").unwrap();
    assert!(config.proxy.forward_token);
    assert!(config.proxy.headers.is_none());
    assert!(config.proxy.claim_header_names.is_empty());
}

#[test]
fn bad_conditions_and_header_names_are_errors_with_their_place() {
    let errors = errors(
        r#"headers = { "authorization.$" = "$.act.sub", "X-Upper" = "a", "x-forwarded-for" = "1", "x-ok.$" = "$[" }"#,
        r#"
[[proxy.routes]]
prefix = "/a"
service = "app"
condition = "claims.act.sub == "

[[proxy.routes]]
prefix = "/b"
service = "app"
condition = 'idp == "x"'
headers = { "host" = "h", "x-nested" = { a = "b" } }

[[proxy.routes]]
prefix = "/c"
service = "app"
condition = "claims.n + 1"

[[proxy.routes]]
prefix = "/d"
skip = true
condition = "true"
headers = { "x-a" = "b" }
"#,
    );
    assert_error(
        &errors,
        r#"proxy.headers."authorization.$""#,
        "set by baton",
    );
    assert_error(&errors, "proxy.headers.X-Upper", "lower-case");
    assert_error(&errors, "proxy.headers.x-forwarded-for", "one hop");
    assert_error(&errors, r#"proxy.headers."x-ok.$""#, "invalid JSONPath");
    assert_error(&errors, "proxy.routes[0].condition", "does not parse");
    assert_error(&errors, "proxy.routes[1].condition", "`idp`");
    assert_error(&errors, "proxy.routes[1].headers.host", "set by baton");
    assert_error(&errors, "proxy.routes[1].headers.x-nested", "literal value");
    assert_error(
        &errors,
        "proxy.routes[2].condition",
        "does not return a bool",
    );
    assert_error(&errors, "proxy.routes[3].condition", "`skip` route");
    assert_error(&errors, "proxy.routes[3].headers", "`skip` route");
    assert_eq!(errors.len(), 11, "{errors:?}");
    let errors = self::errors("forward_token = \"no\"", "");
    assert_error(&errors, "proxy", "expected a boolean");
}
