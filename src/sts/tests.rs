use std::path::Path;

use super::*;

fn config(extra: &str) -> Config {
    let source = format!(
        r#"
[server]
org = "org_acme"

[proxy]
service = "app"

[[keys]]
id = "k"
algorithm = "HS256"
secret = "sbsec_x"

[[token_providers]]
service = "app"
key = "k"
mapping = {{}}

[[token_providers]]
service = "other"
key = "k"
mapping = {{}}
{extra}
"#
    );
    Config::from_toml(&source, Path::new("."), &|name| {
        (name == "CLIENT_SECRET").then(|| "s3cret:with/odd chars".to_owned())
    })
    .unwrap()
}

fn form(body: &str) -> Params {
    Params::parse(
        Some("application/x-www-form-urlencoded; charset=utf-8"),
        body.as_bytes(),
    )
    .unwrap()
}

#[test]
fn targets_resolve_in_both_forms() {
    let config = config("");
    assert_eq!(service_of_target(&config, "app").as_deref(), Some("app"));
    assert_eq!(
        service_of_target(&config, "https://tokens.statebacked.dev/org_acme/other").as_deref(),
        Some("other")
    );
    assert_eq!(
        service_of_target(&config, "https://tokens.statebacked.dev/org_evil/other"),
        None
    );
    assert_eq!(
        service_of_target(&config, "https://elsewhere.dev/org_acme/other"),
        None
    );
    assert_eq!(
        service_of_target(&config, "https://tokens.statebacked.dev/org_acme/a/b"),
        None
    );
}

#[test]
fn audience_and_resource_must_agree_and_default_to_the_proxy_service() {
    let config = config("");
    assert_eq!(target_service(&config, &form("")).unwrap(), "app");
    assert_eq!(
        target_service(&config, &form("audience=other&resource=other")).unwrap(),
        "other"
    );
    let conflict = target_service(&config, &form("audience=app&resource=other")).unwrap_err();
    assert_eq!(conflict.status, 400);
    assert!(String::from_utf8_lossy(&conflict.body).contains("invalid_target"));
}

#[test]
fn repeated_parameters_are_found_except_audience_and_resource() {
    assert_eq!(
        form("audience=a&audience=b&resource=c&resource=d").repeated(),
        None
    );
    assert_eq!(
        form("subject_token=a&grant_type=x&subject_token=b").repeated(),
        Some("subject_token")
    );
}

#[test]
fn json_bodies_take_strings_and_audience_arrays() {
    let params = Params::parse(
        Some("application/json"),
        br#"{"grant_type":"g","audience":["a","b"],"subject_token_type":null}"#,
    )
    .unwrap();
    assert_eq!(params.get("grant_type"), Some("g"));
    assert_eq!(params.all("audience").collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(params.get("subject_token_type"), None);
    for bad in [
        &br#"{"grant_type":5}"#[..],
        b"[1]",
        b"not json",
        br#"{"subject_token":["a"]}"#,
    ] {
        let reply = Params::parse(Some("application/json"), bad).unwrap_err();
        assert_eq!(reply.status, 400, "{}", String::from_utf8_lossy(bad));
    }
    assert_eq!(
        Params::parse(Some("text/plain"), b"x").unwrap_err().status,
        415
    );
    assert_eq!(Params::parse(None, b"x").unwrap_err().status, 415);
}

#[test]
fn client_authentication_basic_and_post() {
    let config =
        config("[[token_providers.clients]]\nid = \"web app\"\nsecret_env = \"CLIENT_SECRET\"\n");
    let provider = config.provider("other").unwrap();
    // RFC 6749 §2.3.1: id and secret are form-encoded before base64.
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("web+app:s3cret%3Awith%2Fodd+chars")
    );
    assert!(authenticate_client(provider, Some(&basic), &form("")).is_ok());
    let post = form("client_id=web+app&client_secret=s3cret%3Awith%2Fodd+chars");
    assert!(authenticate_client(provider, None, &post).is_ok());
    let both = authenticate_client(provider, Some(&basic), &post).unwrap_err();
    assert_eq!(both.status, 400);
    let wrong = authenticate_client(
        provider,
        None,
        &form("client_id=web+app&client_secret=nope"),
    )
    .unwrap_err();
    assert_eq!(wrong.status, 401);
    assert!(
        wrong
            .headers
            .iter()
            .any(|(n, v)| *n == "www-authenticate" && v.starts_with("Basic"))
    );
    assert_eq!(
        authenticate_client(provider, None, &form(""))
            .unwrap_err()
            .status,
        401
    );
    // A provider without clients is public.
    assert!(authenticate_client(config.provider("app").unwrap(), None, &form("")).is_ok());
}
