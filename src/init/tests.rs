//! Every preset renders a config that loads, and a missing flag is an error that names it.

use std::path::Path;

use jsonwebtoken::Algorithm;

use super::*;
use crate::config::Config;

/// The flags every preset could need.
fn full_options() -> InitOptions {
    InitOptions {
        issuer: Some("https://idp.example.com/realms/acme".to_owned()),
        audience: Some("my-api".to_owned()),
        domain: Some("acme.eu.auth0.com".to_owned()),
        service: Some("orders".to_owned()),
    }
}

fn render(preset: Preset, options: &InitOptions) -> Result<String, InitError> {
    let key = KeyEntry {
        id: "sbk_init_test".to_owned(),
        file: "signing-key.pem".to_owned(),
        algorithm: Algorithm::ES256,
    };
    super::render(preset, options, &key)
}

/// Loads `text` as baton would, beside a freshly generated signing key.
fn load(text: &str, dir: &Path) -> Config {
    let key = crate::keygen::generate(Algorithm::ES256).unwrap();
    std::fs::write(dir.join("signing-key.pem"), key.material.expose()).unwrap();
    Config::from_toml(text, dir, &|_| None).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn every_preset_renders_a_config_that_loads() {
    let dir = tempfile::tempdir().unwrap();
    for (name, preset) in PRESETS {
        let text = render(preset, &full_options()).unwrap();
        let config = load(&text, dir.path());
        assert_eq!(config.idps.len(), 1, "{name}");
        assert_eq!(config.token_providers[0].service, "orders", "{name}");
        assert!(text.contains(&format!("--preset {name}")), "{name}");
    }
}

#[test]
fn presets_follow_their_providers_issuer_forms() {
    let dir = tempfile::tempdir().unwrap();
    let issuer_of = |preset: Preset| {
        let config = load(&render(preset, &full_options()).unwrap(), dir.path());
        config.idps[0].issuer.clone().unwrap()
    };
    assert_eq!(issuer_of(Preset::Auth0), "https://acme.eu.auth0.com/");
    assert_eq!(issuer_of(Preset::Google), "https://accounts.google.com");
    assert_eq!(
        issuer_of(Preset::Firebase),
        "https://securetoken.google.com/my-api"
    );
    assert_eq!(
        issuer_of(Preset::GithubActions),
        "https://token.actions.githubusercontent.com"
    );
    assert_eq!(
        issuer_of(Preset::Keycloak),
        "https://idp.example.com/realms/acme"
    );
    let supabase = InitOptions {
        issuer: None,
        domain: Some("abcd.supabase.co".to_owned()),
        ..full_options()
    };
    let config = load(&render(Preset::Supabase, &supabase).unwrap(), dir.path());
    assert_eq!(
        config.idps[0].issuer.as_deref(),
        Some("https://abcd.supabase.co/auth/v1")
    );
    assert_eq!(config.idps[0].audience.as_deref(), Some("my-api"));
}

#[test]
fn cognito_checks_the_client_in_a_condition_as_its_tokens_have_no_audience() {
    let dir = tempfile::tempdir().unwrap();
    let options = InitOptions {
        audience: Some("client\"quote".to_owned()),
        ..full_options()
    };
    let text = render(Preset::Cognito, &options).unwrap();
    let config = load(&text, dir.path());
    assert_eq!(config.idps[0].audience, None);
    assert!(config.idps[0].condition.is_some(), "{text}");
}

#[test]
fn a_missing_flag_is_named_with_what_it_is() {
    let none = InitOptions {
        issuer: None,
        audience: None,
        domain: None,
        ..full_options()
    };
    for (name, preset, flags) in [
        ("auth0", Preset::Auth0, &["--domain", "--audience"][..]),
        ("cognito", Preset::Cognito, &["--issuer", "--audience"]),
        ("supabase", Preset::Supabase, &["--domain"]),
        ("keycloak", Preset::Keycloak, &["--issuer", "--audience"]),
        ("google", Preset::Google, &["--audience"]),
        ("firebase", Preset::Firebase, &["--audience"]),
        ("github-actions", Preset::GithubActions, &["--audience"]),
        (
            "kubernetes",
            Preset::Kubernetes,
            &["--issuer", "--audience"],
        ),
        (
            "generic-oidc",
            Preset::GenericOidc,
            &["--issuer", "--audience"],
        ),
    ] {
        let error = render(preset, &none).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("--preset {name} needs ")),
            "{error}"
        );
        for flag in flags {
            assert!(error.contains(flag), "{name}: {error}");
        }
    }
}

#[test]
fn bad_values_are_refused_with_their_flag() {
    let http = InitOptions {
        issuer: Some("http://idp.example.com".to_owned()),
        ..full_options()
    };
    assert!(matches!(
        render(Preset::GenericOidc, &http),
        Err(InitError::Invalid {
            flag: "--issuer",
            ..
        })
    ));
    let domain = InitOptions {
        domain: Some("acme.auth0.com/\"\n[[idps]]".to_owned()),
        ..full_options()
    };
    assert!(matches!(
        render(Preset::Auth0, &domain),
        Err(InitError::Invalid {
            flag: "--domain",
            ..
        })
    ));
    let service = InitOptions {
        service: Some("a b".to_owned()),
        ..full_options()
    };
    assert!(matches!(
        render(Preset::Google, &service),
        Err(InitError::Invalid {
            flag: "--service",
            ..
        })
    ));
    assert!(matches!(
        Preset::parse("okta"),
        Err(InitError::UnknownPreset(_))
    ));
}

#[test]
fn hostile_audiences_stay_data() {
    // A value with TOML and CEL metacharacters is quoted, never read as config.
    let dir = tempfile::tempdir().unwrap();
    let options = InitOptions {
        audience: Some("x\"\n[admin]\nlisten = \"0.0.0.0:1\"".to_owned()),
        ..full_options()
    };
    for preset in [Preset::Google, Preset::Cognito] {
        let config = load(&render(preset, &options).unwrap(), dir.path());
        assert_ne!(config.admin.listen.port(), 1);
    }
}
