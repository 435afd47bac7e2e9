use std::path::Path;

use crate::config::{Config, ConfigError, ConfigErrors};

/// Two IdPs (one named, one known by its issuer) and a provider with two clients.
fn source(idp_condition: &str, provider_condition: &str, client_idps: &str) -> String {
    format!(
        r#"
[[keys]]
id = "k"
algorithm = "HS256"
secret = "a-demo-secret-of-enough-length"

[[idps]]
name = "google"
issuer = "https://accounts.google.com"
audience = "app"
algorithms = ["HS256"]
key = "c2VjcmV0"
mapping = {{ "sub.$" = "$.sub" }}
{idp_condition}

[[idps]]
issuer = "https://other.example/"
algorithms = ["HS256"]
key = "c2VjcmV0"
mapping = {{ "sub.$" = "$.sub" }}

[[token_providers]]
service = "app"
key = "k"
mapping = {{ "sub.$" = "$.sub" }}
{provider_condition}

[[token_providers.clients]]
id = "web"
secret = "web-secret"
{client_idps}

[[token_providers.clients]]
id = "cli"
secret = "cli-secret"
"#
    )
}

fn load(source: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml(source, Path::new("."), &|_| None)
}

fn errors(source: &str) -> Vec<ConfigError> {
    match load(source) {
        Ok(_) => panic!("expected errors"),
        Err(ConfigErrors(errors)) => errors,
    }
}

/// Asserts that exactly one error is reported, at `path`, containing `needle`.
fn assert_only_error(source: &str, path: &str, needle: &str) {
    let errors = errors(source);
    assert!(
        errors.len() == 1 && errors[0].path == path && errors[0].message.contains(needle),
        "expected one error at {path} containing {needle:?}, got:\n{}",
        ConfigErrors(errors.to_vec())
    );
    // The position is the entry's (`[[idps]]` or `[[token_providers]]`), so an editor jumps
    // near it.
    assert!(errors[0].position.is_some(), "{:?}", errors[0]);
}

#[test]
fn conditions_and_client_idps_load_compiled() {
    let config = load(&source(
        r#"condition = 'claims.email_verified == true && claims.hd == "example.com"'"#,
        r#"condition = 'idp == "google" && client != null'"#,
        r#"idps = ["google", "https://other.example/"]"#,
    ))
    .unwrap();
    let idp = &config.idps[0];
    assert_eq!(
        idp.condition.as_ref().map(|c| c.source()),
        Some(r#"claims.email_verified == true && claims.hd == "example.com""#)
    );
    assert!(config.idps[1].condition.is_none());
    let provider = config.provider("app").unwrap();
    assert!(provider.condition.is_some());
    let web = &provider.clients[0];
    assert!(web.may_use_idp("google"));
    assert!(web.may_use_idp("https://other.example/"));
    assert!(!web.may_use_idp("elsewhere"));
    // No `idps`: every IdP.
    assert!(provider.clients[1].idps.is_none());
    assert!(provider.clients[1].may_use_idp("elsewhere"));
}

#[test]
fn an_expression_that_does_not_parse_is_an_error_at_its_place() {
    assert_only_error(
        &source("condition = 'claims.hd == '", "", ""),
        "idps[0].condition",
        "does not parse",
    );
}

#[test]
fn an_unknown_variable_is_an_error_naming_the_variables_of_the_place() {
    // `request` is a route's variable; `idp` a provider's: neither is an IdP's.
    assert_only_error(
        &source("condition = 'request.method == \"GET\"'", "", ""),
        "idps[0].condition",
        "names `request`, which is not a variable here (these are: claims)",
    );
    assert_only_error(
        &source("", "condition = 'request.path == \"/\"'", ""),
        "token_providers[0].condition",
        "names `request`, which is not a variable here (these are: claims, idp, client, actor)",
    );
}

#[test]
fn a_condition_that_cannot_return_a_bool_is_an_error() {
    assert_only_error(
        &source("condition = 'claims.n + 1'", "", ""),
        "idps[0].condition",
        "does not return a bool",
    );
    assert_only_error(
        &source("", "condition = '\"yes\"'", ""),
        "token_providers[0].condition",
        "does not return a bool",
    );
}

#[test]
fn an_empty_or_oversized_condition_is_an_error() {
    assert_only_error(
        &source("condition = ' '", "", ""),
        "idps[0].condition",
        "is empty",
    );
    let long = format!("condition = '{}true'", "true && ".repeat(600));
    assert_only_error(&source(&long, "", ""), "idps[0].condition", "longer than");
}

#[test]
fn a_client_naming_an_unknown_idp_is_an_error() {
    assert_only_error(
        &source("", "", r#"idps = ["google", "okta"]"#),
        "token_providers[0].clients[0].idps[1]",
        "no [[idps]] entry is named \"okta\"",
    );
    assert_only_error(
        &source("", "", "idps = []"),
        "token_providers[0].clients[0].idps",
        "name at least one IdP",
    );
}

#[test]
fn a_client_may_name_an_idp_whose_own_entry_has_errors_without_a_second_error() {
    // The IdP's condition is wrong; the client's reference to it is not.
    assert_only_error(
        &source("condition = 'nope'", "", r#"idps = ["google"]"#),
        "idps[0].condition",
        "names `nope`",
    );
}
