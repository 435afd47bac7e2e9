use base64::Engine as _;
use jsonwebtoken::Algorithm;

use super::*;
use crate::idp::{DEFAULT_LEEWAY, UrlPolicy};
use crate::mint::STATEBACKED_AUDIENCE;

fn env(name: &str) -> Option<String> {
    match name {
        "KEY_MAIN" => Some("sbsec_test_secret_value_long_enough".to_owned()),
        "SUPABASE_SECRET" => Some("super-secret-jwt-token".to_owned()),
        _ => None,
    }
}

fn load(source: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml(source, Path::new("."), &env)
}

fn errors(source: &str) -> Vec<ConfigError> {
    match load(source) {
        Ok(_) => panic!("expected errors"),
        Err(ConfigErrors(errors)) => errors,
    }
}

/// Asserts that one error has this path and a message containing `needle`.
fn assert_error(errors: &[ConfigError], path: &str, needle: &str) {
    assert!(
        errors
            .iter()
            .any(|e| e.path == path && e.message.contains(needle)),
        "no error at {path} containing {needle:?} in:\n{}",
        ConfigErrors(errors.to_vec())
    );
}

const VALID: &str = r#"
[server]
org = "org_example"
issuer = "https://baton.example.com"

[proxy]
listen = "127.0.0.1:8080"
upstream = "127.0.0.1:3000"
service = "my-app"

[[keys]]
id = "sbk_main"
algorithm = "HS256"
secret_env = "KEY_MAIN"

[[idps]]
issuer = "https://example.us.auth0.com/"
audience = "https://example.us.auth0.com/api/v2/"
jwks_url = "https://example.us.auth0.com/.well-known/jwks.json"
mapping = { "sub.$" = "$.sub", "email.$" = "$.email", provider = "auth0" }

[[idps]]
audience = "authenticated"
algorithms = ["HS256"]
key_env = "SUPABASE_SECRET"
leeway = "30s"
mapping = { "sub.$" = "$.sub", provider = "supabase" }

[[token_providers]]
service = "my-app"
key = "sbk_main"
ttl = "15m"
mapping = { "sub.$" = "$.sub", "provider.$" = "$.provider" }
"#;

#[test]
fn the_design_example_loads() {
    let config = load(VALID).unwrap();
    assert_eq!(config.idps.len(), 2);
    assert_eq!(config.idps[0].algorithms, vec![Algorithm::RS256]);
    assert_eq!(config.idps[1].leeway, Duration::from_secs(30));
    assert_eq!(config.idps[0].leeway, DEFAULT_LEEWAY);
    let provider = config.provider("my-app").unwrap();
    assert_eq!(provider.ttl, Duration::from_secs(900));
    assert_eq!(provider.audience, STATEBACKED_AUDIENCE);
    assert_eq!(provider.issuer, "https://baton.example.com");
    assert_eq!(config.server.audience_base, DEFAULT_AUDIENCE_BASE);
    assert!(config.warnings.is_empty());
}

#[test]
fn the_shipped_configs_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let source = std::fs::read_to_string(&path).unwrap();
            // Every `*_env` name a shipped config uses reads as a placeholder secret (a master
            // key as 32 bytes of base64).
            if let Err(e) = Config::from_toml(&source, &dir, &|name| {
                Some(if name.ends_with("MASTER_KEY") {
                    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_owned()
                } else {
                    "sbsec_placeholder_secret_for_config_tests".to_owned()
                })
            }) {
                panic!("{}: {e}", path.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 1);
}

#[test]
fn every_error_is_reported_at_once_with_its_place() {
    let source = r#"
[server]
orgg = "typo"

[[keys]]
id = "sbk_a"
algorithm = "HS257"
secret_env = "KEY_MAIN"

[[idps]]
jwks_url = "https://a/jwks"
mapping = {}

[[idps]]
issuer = "https://b"
mapping = { "role.$" = "$.[" }
discovery = true

[[token_providers]]
service = "bad service!"
key = "sbk_missing"
mapping = {}
"#;
    let errors = errors(source);
    assert!(errors.len() >= 6, "{}", ConfigErrors(errors.to_vec()));
    assert_error(&errors, "server", "unknown field `orgg`");
    assert_error(&errors, "keys[0].algorithm", "unknown algorithm `HS257`");
    assert_error(&errors, "idps[0]", "needs an issuer, an audience, or both");
    assert_error(&errors, "idps[1].mapping.\"role.$\"", "invalid JSONPath");
    assert_error(&errors, "token_providers[0].service", "must match");
    assert_error(
        &errors,
        "token_providers[0].key",
        "no [[keys]] entry has id \"sbk_missing\"",
    );
    // Positions are the line of the element: `[[idps]]` #2 starts on line 14.
    let role = errors.iter().find(|e| e.path.contains("role")).unwrap();
    assert_eq!(role.position.map(|p| p.0), Some(14));
    let orgg = errors.iter().find(|e| e.path == "server").unwrap();
    assert_eq!(orgg.position.map(|p| p.0), Some(3));
}

#[test]
fn a_syntax_error_has_line_and_column() {
    let errors = errors("[server]\norg = \n");
    assert_eq!(errors[0].position, Some((2, 7)), "{errors:?}");
    assert!(errors[0].message.contains("expected"), "{errors:?}");
}

#[test]
fn unknown_keys_and_sections_are_rejected() {
    let errors = errors(
        "[servr]\n[[idps]]\nissuer = \"https://a\"\naudiense = \"x\"\ndiscovery = true\nmapping = {}\n",
    );
    assert_error(&errors, "servr", "unknown section");
    assert_error(&errors, "idps[0]", "unknown field `audiense`");
}

fn idp_errors(idp: &str) -> Vec<ConfigError> {
    errors(&format!("[[idps]]\n{idp}\n"))
}

#[test]
fn key_sources_must_be_exactly_one() {
    let none = idp_errors("issuer = \"https://a\"\nmapping = {}");
    assert_error(&none, "idps[0]", "no key source");
    let two = idp_errors(
        "issuer = \"https://a\"\ndiscovery = true\njwks_url = \"https://a/j\"\nmapping = {}",
    );
    assert_error(&two, "idps[0]", "several key sources (jwks_url, discovery)");
}

#[test]
fn algorithms_are_checked() {
    let none = idp_errors(
        "issuer = \"https://a\"\njwks_url = \"https://a/j\"\nalgorithms = [\"none\"]\nmapping = {}",
    );
    assert_error(&none, "idps[0].algorithms[0]", "never accepted");
    let hmac_jwks = idp_errors(
        "issuer = \"https://a\"\njwks_url = \"https://a/j\"\nalgorithms = [\"RS256\", \"HS256\"]\nmapping = {}",
    );
    assert_error(&hmac_jwks, "idps[0].algorithms", "HS256 with a JWKS");
    let hmac_discovery = idp_errors(
        "issuer = \"https://a\"\ndiscovery = true\nalgorithms = [\"HS512\"]\nmapping = {}",
    );
    assert_error(
        &hmac_discovery,
        "idps[0].algorithms",
        "HS512 with OIDC discovery",
    );
    let secret_as_rsa = idp_errors(
        "issuer = \"https://a\"\nkey_env = \"SUPABASE_SECRET\"\nalgorithms = [\"RS256\"]\nmapping = {}",
    );
    assert_error(
        &secret_as_rsa,
        "idps[0].algorithms",
        "RS256 needs a public key",
    );
}

#[test]
fn hmac_is_refused_with_a_public_key() {
    let key = crate::keygen::generate(Algorithm::RS256).unwrap();
    let signing =
        SigningKey::from_private_pem("k", Algorithm::RS256, key.material.expose()).unwrap();
    let jwk = serde_json::to_string(signing.public_jwk().unwrap()).unwrap();
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(jwk);
    let errors = idp_errors(&format!(
        "issuer = \"https://a\"\nkey = \"{encoded}\"\nalgorithms = [\"RS256\", \"HS256\"]\nmapping = {{}}"
    ));
    assert_error(
        &errors,
        "idps[0].algorithms",
        "HS256 (HMAC) is never verified with a public key",
    );
}

#[test]
fn duplicate_idps_keys_and_services_are_errors() {
    let source = format!(
        "{VALID}\n[[idps]]\naudience = \"authenticated\"\ndiscovery = false\njwks_url = \"https://x/j\"\nmapping = {{}}\n\
         [[keys]]\nid = \"sbk_main\"\nalgorithm = \"HS256\"\nsecret_env = \"KEY_MAIN\"\n\
         [[token_providers]]\nservice = \"my-app\"\nkey = \"sbk_main\"\nmapping = {{}}\n"
    );
    let errors = errors(&source);
    assert_error(&errors, "idps[2]", "same issuer and audience as idps[1]");
    assert_error(&errors, "keys", "two entries have the key id \"sbk_main\"");
    assert_error(
        &errors,
        "token_providers",
        "two entries have the service \"my-app\"",
    );
}

#[test]
fn access_token_mappings_may_not_set_registered_claims() {
    let source = format!(
        "{VALID}\n[[token_providers]]\nservice = \"api\"\nkey = \"sbk_main\"\nprofile = \"access_token\"\n\
         mapping = {{ \"iss.$\" = \"$.sub\", exp = 5, sub = \"x\" }}\n"
    );
    let errors = errors(&source);
    assert_error(
        &errors,
        "token_providers[1].mapping.\"iss.$\"",
        "set by baton",
    );
    assert_error(&errors, "token_providers[1].mapping.exp", "set by baton");
    assert!(!errors.iter().any(|e| e.path.ends_with(".sub")));
}

#[test]
fn secrets_come_from_env_or_file_and_missing_ones_are_named() {
    let unset =
        errors("[[keys]]\nid = \"k\"\nalgorithm = \"HS256\"\nsecret_env = \"NOT_SET_ANYWHERE\"\n");
    assert_error(&unset, "keys[0].secret_env", "NOT_SET_ANYWHERE is not set");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "sbsec_from_file\n").unwrap();
    let config = Config::from_toml(
        "[[keys]]\nid = \"k\"\nalgorithm = \"HS256\"\nsecret_file = \"secret\"\n",
        dir.path(),
        &env,
    )
    .unwrap();
    assert_eq!(config.keys[0].id(), "k");
    let missing = errors(
        "[[keys]]\nid = \"k\"\nalgorithm = \"HS256\"\nsecret_file = \"/nonexistent/secret\"\n",
    );
    assert_error(
        &missing,
        "keys[0].secret_file",
        "cannot read /nonexistent/secret",
    );
}

#[test]
fn an_inline_secret_loads_with_a_warning() {
    let config =
        load("[[keys]]\nid = \"k\"\nalgorithm = \"HS256\"\nsecret = \"sbsec_demo\"\n").unwrap();
    assert!(
        config.warnings[0].contains("inline"),
        "{:?}",
        config.warnings
    );
}

#[test]
fn a_key_must_fit_its_algorithm() {
    let dir = tempfile::tempdir().unwrap();
    let p384 = crate::keygen::generate(Algorithm::ES384).unwrap();
    std::fs::write(dir.path().join("p384.pem"), p384.material.expose()).unwrap();
    let source = "[[keys]]\nid = \"k\"\nalgorithm = \"ES256\"\nprivate_key_file = \"p384.pem\"\n\
                  [[keys]]\nid = \"h\"\nalgorithm = \"HS256\"\nprivate_key_file = \"p384.pem\"\n\
                  [[keys]]\nid = \"r\"\nalgorithm = \"RS256\"\nsecret_env = \"KEY_MAIN\"\n";
    let ConfigErrors(found) = Config::from_toml(source, dir.path(), &env).unwrap_err();
    assert_error(&found, "keys[0].private_key_file", "does not fit ES256");
    assert_error(&found, "keys[1].private_key_file", "HS256 is HMAC");
    assert_error(&found, "keys[2].secret_env", "RS256 needs a private key");
}

#[test]
fn durations_and_services_are_validated() {
    let source = format!(
        "{VALID}\n[[token_providers]]\nservice = \"{}\"\nkey = \"sbk_main\"\nttl = \"15 minutes\"\nmapping = {{}}\n",
        "a".repeat(129)
    );
    let errors = errors(&source);
    assert_error(&errors, "token_providers[1].ttl", "not a duration");
    assert_error(&errors, "token_providers[1].service", "must match");
    assert!(valid_service("my-app_2"));
    assert!(!valid_service(""));
    assert!(!valid_service("a/b"));
}

#[test]
fn proxy_service_must_name_a_provider() {
    let source = VALID.replace(
        "service = \"my-app\"\n\n[[keys]]",
        "service = \"other\"\n\n[[keys]]",
    );
    assert_error(
        &errors(&source),
        "proxy.service",
        "no [[token_providers]] entry has service \"other\"",
    );
}

#[test]
fn errors_never_show_secret_values() {
    // A secret given where a PEM is expected must not be echoed back.
    let errors =
        errors("[[keys]]\nid = \"k\"\nalgorithm = \"RS256\"\nprivate_key_env = \"KEY_MAIN\"\n");
    let shown = ConfigErrors(errors).to_string();
    assert!(!shown.contains("sbsec_test_secret"), "{shown}");
}

#[test]
fn admin_settings_are_checked_together() {
    let admin = |body: &str, env: &'static [(&str, &str)]| {
        Config::from_toml(
            &format!("[admin]\n{body}\n"),
            Path::new("/etc/baton"),
            &|name| {
                env.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            },
        )
    };
    let messages = |result: Result<Config, ConfigErrors>| -> Vec<String> {
        result
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect()
    };
    let config = admin(
        "token_env = \"T\"\nstate_file = \"state.json\"\nmaster_key_env = \"M\"",
        &[
            ("T", "admin-token"),
            ("M", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
        ],
    )
    .unwrap();
    assert_eq!(config.admin.token.unwrap().expose(), b"admin-token");
    assert_eq!(config.admin.master_key.unwrap().expose().len(), 32);
    assert_eq!(
        config.admin.state_file.as_deref(),
        Some(Path::new("/etc/baton/state.json"))
    );
    // From files (a Kubernetes Secret mounted as files), a trailing newline dropped.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "file-token\n").unwrap();
    std::fs::write(
        dir.path().join("master"),
        format!("{}\n", crate::token::b64url(&[1u8; 32])),
    )
    .unwrap();
    let from_files = Config::from_toml(
        "[admin]\ntoken_file = \"token\"\nmaster_key_file = \"master\"\nstate_file = \"s.json\"",
        dir.path(),
        &|_| None,
    )
    .unwrap();
    assert_eq!(from_files.admin.token.unwrap().expose(), b"file-token");
    assert_eq!(from_files.admin.master_key.unwrap().expose(), [1u8; 32]);
    assert_eq!(
        messages(admin(
            "token_env = \"T\"\ntoken_file = \"t\"",
            &[("T", "x")]
        )),
        ["admin: several key sources (token_env, token_file); set exactly one"]
    );
    assert_eq!(
        messages(admin("state_file = \"state.json\"", &[])),
        [
            "admin.state_file: a state file needs master_key_env or master_key_file (its secrets are sealed with that key)",
            "admin.state_file: a state file is written through the admin API, which needs token_env or token_file",
        ]
    );
    assert_eq!(
        messages(admin(
            "token_env = \"T\"\nmaster_key_env = \"M\"",
            &[("T", ""), ("M", "c2hvcnQ=")]
        )),
        [
            "admin.token_env: is empty",
            "admin.master_key_env: 5 bytes; the master key is 32 bytes (AES-256), base64",
        ]
    );
}

#[test]
fn api_entries_are_validated_with_the_file_and_named_as_api_entries() {
    let file = r#"
[[idps]]
issuer = "https://file.idp/"
algorithms = ["HS256"]
key = "c2VjcmV0"
mapping = { "sub.$" = "$.sub" }
"#;
    let clash = IdpSpec {
        name: None,
        issuer: Some("https://file.idp/".into()),
        audience: None,
        algorithms: Some(vec!["HS256".into()]),
        jwks_url: None,
        discovery: false,
        allow_http: false,
        key: Some(spec::InlineSecret("b3RoZXI".into())),
        key_env: None,
        key_file: None,
        leeway: None,
        mapping: serde_json::Map::new(),
        condition: None,
        introspection: None,
        token_prefix: None,
        introspection_cache_ttl: None,
    };
    let api = ApiEntries {
        idps: vec![("idps[iss=https://file.idp/] (admin API)".into(), clash)],
        ..ApiEntries::default()
    };
    let errors = Config::from_toml_with(file, Path::new("."), &|_| None, api)
        .unwrap_err()
        .0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "idps[iss=https://file.idp/] (admin API)");
    assert!(
        errors[0].message.contains("same issuer and audience"),
        "{errors:?}"
    );
    assert_eq!(errors[0].position, None);
}

#[test]
fn a_route_prefix_must_be_a_normalized_path() {
    let with_routes = |prefixes: &[&str]| {
        let routes: String = prefixes
            .iter()
            .map(|p| format!("[[proxy.routes]]\nprefix = {p:?}\nskip = true\n"))
            .collect();
        VALID.replace("[[keys]]", &format!("{routes}\n[[keys]]"))
    };
    let errors = errors(&with_routes(&[
        "/a/../b", "/a//b", "/%61pi", "/a/./b", "/x%2Fy",
    ]));
    for i in 0..5 {
        assert_error(
            &errors,
            &format!("proxy.routes[{i}].prefix"),
            "a normalized path",
        );
    }
    let config = load(&with_routes(&[
        "/health",
        "/api/",
        "/files%20x",
        "/.well-known/x",
    ]))
    .unwrap();
    let prefixes: Vec<&str> = config
        .proxy
        .routes
        .iter()
        .map(|r| r.prefix.as_str())
        .collect();
    assert_eq!(
        prefixes,
        ["/health", "/api", "/files%20x", "/.well-known/x"]
    );
}

/// A file with one `[[idps]]` entry holding `idp` (and an audience), and nothing else.
fn one_idp(idp: &str) -> String {
    format!("[[idps]]\naudience = \"app\"\nmapping = {{}}\n{idp}\n")
}

#[test]
fn jwks_urls_are_https_or_loopback_unless_allow_http() {
    for fine in [
        "https://idp.example/jwks",
        "http://127.0.0.1:8080/jwks",
        "http://localhost/jwks",
        "http://[::1]:9/jwks",
    ] {
        let config = load(&one_idp(&format!("jwks_url = \"{fine}\"")))
            .unwrap_or_else(|e| panic!("{fine}: {e}"));
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        assert_eq!(config.idps[0].url_policy, UrlPolicy::HttpsOrLoopback);
    }
    for remote in ["http://idp.example/jwks", "http://0.0.0.0:8080/jwks"] {
        let errors = errors(&one_idp(&format!("jwks_url = \"{remote}\"")));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].to_string(),
            "1:1: idps[0].jwks_url: must be https (or a loopback address) unless allow_http = true"
        );
    }
    let allowed = load(&one_idp(
        "jwks_url = \"http://idp.example/jwks\"\nallow_http = true",
    ))
    .unwrap();
    assert_eq!(allowed.idps[0].url_policy, UrlPolicy::InsecureHttpAllowed);
    assert_eq!(allowed.warnings.len(), 1, "{:?}", allowed.warnings);
    assert!(
        allowed.warnings[0].starts_with("idps[0]: allow_http = true")
            && allowed.warnings[0].contains("trusted network"),
        "{:?}",
        allowed.warnings
    );
    // allow_http never admits another scheme.
    let ftp = errors(&one_idp(
        "jwks_url = \"ftp://idp.example/jwks\"\nallow_http = true",
    ));
    assert_error(&ftp, "idps[0].jwks_url", "is not an http(s) URL");
}

#[test]
fn a_discovery_issuer_obeys_the_same_rule() {
    let plain = errors(&one_idp(
        "issuer = \"http://idp.example/realms/x\"\ndiscovery = true",
    ));
    assert_eq!(plain.len(), 1, "{plain:?}");
    assert_eq!(plain[0].path, "idps[0].issuer");
    assert_eq!(
        plain[0].message,
        "must be https (or a loopback address) unless allow_http = true \
         (discovery fetches http://idp.example/realms/x/.well-known/openid-configuration)"
    );
    let not_a_url = errors(&one_idp("issuer = \"idp.example\"\ndiscovery = true"));
    assert_error(&not_a_url, "idps[0].issuer", "is not an http(s) URL");
    for fine in [
        "issuer = \"https://idp.example/\"\ndiscovery = true",
        "issuer = \"http://127.0.0.1:8080\"\ndiscovery = true",
        "issuer = \"http://idp.example\"\ndiscovery = true\nallow_http = true",
    ] {
        load(&one_idp(fine)).unwrap_or_else(|e| panic!("{fine}: {e}"));
    }
    // Without discovery the issuer is only compared, never fetched: any string will do.
    let secret = load(&one_idp(
        "issuer = \"http://idp.example\"\nkey_env = \"SUPABASE_SECRET\"\nalgorithms = [\"HS256\"]",
    ));
    assert!(secret.is_ok(), "{secret:?}");
}

#[test]
fn allow_http_without_a_fetched_key_is_an_error() {
    let errors = errors(&one_idp(
        "key_env = \"SUPABASE_SECRET\"\nalgorithms = [\"HS256\"]\nallow_http = true",
    ));
    assert_error(
        &errors,
        "idps[0].allow_http",
        "applies to jwks_url and discovery only",
    );
}

#[test]
fn an_api_entry_has_no_allow_http_way_out() {
    let remote = IdpSpec {
        name: None,
        issuer: Some("https://api.idp/".into()),
        audience: None,
        algorithms: Some(vec!["RS256".into()]),
        jwks_url: Some("http://idp.example/jwks".into()),
        discovery: false,
        allow_http: false,
        key: None,
        key_env: None,
        key_file: None,
        leeway: None,
        mapping: serde_json::Map::new(),
        condition: None,
        introspection: None,
        token_prefix: None,
        introspection_cache_ttl: None,
    };
    let api = ApiEntries {
        idps: vec![("idps[iss=https://api.idp/] (admin API)".into(), remote)],
        ..ApiEntries::default()
    };
    let errors = Config::from_toml_with("", Path::new("."), &|_| None, api)
        .unwrap_err()
        .0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].to_string(),
        "idps[iss=https://api.idp/] (admin API).jwks_url: must be https (or a loopback \
         address); allow_http is for [[idps]] entries of the config file only"
    );
}

#[test]
fn upstream_protocol_is_http1_by_default_h2c_on_request_and_nothing_else() {
    assert_eq!(
        load(VALID).unwrap().proxy.upstream_protocol,
        UpstreamProtocol::Http1
    );
    let with = |value: &str| {
        VALID.replace(
            "upstream = \"127.0.0.1:3000\"\n",
            &format!("upstream = \"127.0.0.1:3000\"\nupstream_protocol = \"{value}\"\n"),
        )
    };
    assert_eq!(
        load(&with("h2c")).unwrap().proxy.upstream_protocol,
        UpstreamProtocol::H2c
    );
    assert_eq!(
        load(&with("http1")).unwrap().proxy.upstream_protocol,
        UpstreamProtocol::Http1
    );
    assert_error(
        &errors(&with("h2")),
        "proxy.upstream_protocol",
        "expected \"http1\" or \"h2c\"",
    );
}

#[test]
fn delegation_defaults_to_false_and_takes_a_bool() {
    let config = load(VALID).unwrap();
    assert!(!config.provider("my-app").unwrap().delegation);
    let on = format!(
        "{VALID}\n[[token_providers]]\nservice = \"delegated\"\nkey = \"sbk_main\"\ndelegation = true\nmapping = {{}}\n"
    );
    assert!(load(&on).unwrap().provider("delegated").unwrap().delegation);
    let wrong = format!(
        "{VALID}\n[[token_providers]]\nservice = \"delegated\"\nkey = \"sbk_main\"\ndelegation = \"yes\"\nmapping = {{}}\n"
    );
    assert!(load(&wrong).is_err());
}

#[test]
fn a_store_is_exclusive_with_the_state_file_and_needs_the_master_key_and_token() {
    let vars = |name: &str| match name {
        "T" => Some("admin-token".to_owned()),
        "M" => Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_owned()),
        "URL" => {
            Some("postgres://baton:s3cret-pw@db.internal:5432/baton?sslmode=verify-full".to_owned())
        }
        "BAD_URL" => Some("mysql://baton:s3cret-pw@db.internal/baton".to_owned()),
        _ => None,
    };
    let load = |source: &str| Config::from_toml(source, Path::new("/etc/baton"), &vars);
    let config = load(
        "[admin]\ntoken_env = \"T\"\nmaster_key_env = \"M\"\n[store]\nurl_env = \"URL\"\nsnapshot_file = \"snap.json\"",
    )
    .unwrap();
    let store = config.store.unwrap();
    assert!(store.tls_required);
    assert!(!store.migrate);
    assert_eq!(store.postgres.get_dbname(), Some("baton"));
    assert_eq!(
        store.snapshot_file.as_deref(),
        Some(Path::new("/etc/baton/snap.json"))
    );
    assert!(!format!("{store:?}").contains("s3cret"));

    let messages = |source: &str| -> Vec<String> {
        load(source)
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect()
    };
    let both = messages(
        "[admin]\ntoken_env = \"T\"\nmaster_key_env = \"M\"\nstate_file = \"s.json\"\n[store]\nurl_env = \"URL\"",
    );
    assert!(
        both.iter()
            .any(|m| m.starts_with("store: [store] and [admin] state_file are exclusive")),
        "{both:?}"
    );
    let alone = messages("[store]\nurl_env = \"URL\"");
    assert!(
        alone.iter().any(|m| m.contains("master_key_env")),
        "{alone:?}"
    );
    assert!(alone.iter().any(|m| m.contains("token_env")), "{alone:?}");
    let bad = messages(
        "[admin]\ntoken_env = \"T\"\nmaster_key_env = \"M\"\n[store]\nurl_env = \"BAD_URL\"",
    );
    assert_eq!(
        bad,
        ["store.url_env: is not a postgres:// or postgresql:// URL"]
    );
    let unknown =
        messages("[admin]\ntoken_env = \"T\"\nmaster_key_env = \"M\"\n[store]\nurl = \"x\"");
    assert!(
        unknown
            .iter()
            .any(|m| m.starts_with("store: unknown field `url`")),
        "{unknown:?}"
    );
}

#[test]
fn sample_ratio_is_a_share_from_zero_to_one() {
    let with = |ratio: &str| {
        format!(
            "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\nsample_ratio = {ratio}\n{VALID}"
        )
    };
    assert_eq!(load(VALID).unwrap().telemetry.sample_ratio, 1.0);
    assert_eq!(load(&with("0.25")).unwrap().telemetry.sample_ratio, 0.25);
    for bad in ["1.5", "-0.1", "nan"] {
        assert_error(&errors(&with(bad)), "telemetry.sample_ratio", "from 0");
    }
}
