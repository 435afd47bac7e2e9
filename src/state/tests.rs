use std::path::Path;
use std::time::SystemTime;

use super::*;
use crate::secret::master_key;

const MASTER_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn master() -> Secret {
    master_key(MASTER_B64.as_bytes()).unwrap()
}

fn config() -> Config {
    Config::from_toml(
        r#"
[[keys]]
id = "sbk_file"
algorithm = "HS256"
secret = "sbsec_file"

[[idps]]
issuer = "https://file.idp/"
algorithms = ["HS256"]
key = "c2VjcmV0"
mapping = { "sub.$" = "$.sub" }

[[token_providers]]
service = "file-app"
key = "sbk_file"
mapping = { "sub.$" = "$.sub" }
"#,
        Path::new("."),
        &|_| None,
    )
    .unwrap()
}

fn idp_request(iss: &str, key: Option<&str>) -> IdpRequest {
    IdpRequest {
        iss: Some(iss.to_owned()),
        aud: None,
        algs: vec!["HS256".to_owned()],
        jwks_url: None,
        key: key.map(str::to_owned),
        mapping: serde_json::from_value(serde_json::json!({ "sub.$": "$.sub" })).unwrap(),
        condition: None,
    }
}

#[test]
fn sealed_secrets_open_only_with_their_key_and_their_entry() {
    let sealed = seal(&master(), &key_aad("sbk_a"), b"sbsec_value").unwrap();
    assert_eq!(
        unseal(&master(), &key_aad("sbk_a"), &sealed)
            .unwrap()
            .expose(),
        b"sbsec_value"
    );
    assert!(!format!("{sealed:?}").contains(&sealed.ciphertext));
    // Moved to another entry, or opened with another master key: refused.
    assert!(matches!(
        unseal(&master(), &key_aad("sbk_b"), &sealed),
        Err(AdminError::Storage(_))
    ));
    let other = Secret::new([9u8; 32]);
    assert!(matches!(
        unseal(&other, &key_aad("sbk_a"), &sealed),
        Err(AdminError::Storage(_))
    ));
    // The same secret sealed twice differs (a fresh nonce each time).
    let again = seal(&master(), &key_aad("sbk_a"), b"sbsec_value").unwrap();
    assert_ne!(sealed.ciphertext, again.ciphertext);
}

#[test]
fn the_state_file_round_trips_and_holds_no_plaintext_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    assert_eq!(ApiState::load(&path, &master()).unwrap(), ApiState::empty());
    let mut state = ApiState::empty();
    let (id, secret) = state
        .create_key(
            &master(),
            "ci".into(),
            vec!["machines.read".into()],
            SystemTime::UNIX_EPOCH,
        )
        .unwrap();
    assert!(id.starts_with("sbk_") && secret.expose().starts_with(b"sbsec_"));
    state
        .upsert_idp(
            &config(),
            &master(),
            idp_request("https://api.idp/", Some("aWRwLXNlY3JldA")),
        )
        .unwrap();
    state.save(&path, &master()).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let secret_text = std::str::from_utf8(secret.expose()).unwrap();
    assert!(
        !text.contains(secret_text) && !text.contains("aWRwLXNlY3JldA"),
        "{text}"
    );
    assert!(
        text.contains("\"createdAt\": \"1970-01-01T00:00:00Z\""),
        "{text}"
    );
    assert_eq!(ApiState::load(&path, &master()).unwrap(), state);
    let entries = state.entries(&master()).unwrap();
    assert_eq!(entries.keys[0].1.secret.as_deref(), Some(secret_text));
    assert_eq!(entries.idps[0].1.key.as_deref(), Some("aWRwLXNlY3JldA"));
    assert!(!format!("{entries:?} {:?}", entries.keys[0].1).contains(secret_text));
    // No temp file is left beside it, and only its owner may read it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}

#[test]
fn a_state_file_of_another_version_or_shape_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(&path, r#"{"version": 2}"#).unwrap();
    let e = ApiState::load(&path, &master()).unwrap_err();
    assert!(e.to_string().contains("version 2"), "{e}");
    std::fs::write(&path, r#"{"version": 1, "idps": [{"surprise": true}]}"#).unwrap();
    assert!(matches!(
        ApiState::load(&path, &master()),
        Err(AdminError::Storage(_))
    ));
}

#[test]
fn an_edited_state_file_or_another_master_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let mut state = ApiState::empty();
    // No secret at all in it: the MAC still binds the file to the master key.
    let mut request = idp_request("https://api.idp/", None);
    request.jwks_url = Some("https://api.idp/jwks".into());
    request.algs = vec!["RS256".into()];
    state.upsert_idp(&config(), &master(), request).unwrap();
    state.save(&path, &master()).unwrap();
    assert_eq!(ApiState::load(&path, &master()).unwrap(), state);
    let other = Secret::new([9u8; 32]);
    let e = ApiState::load(&path, &other).unwrap_err();
    assert!(
        e.to_string().contains("does not match the master key"),
        "{e}"
    );
    // Pointing the IdP's keys elsewhere is an edit the MAC catches.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("https://api.idp/jwks", "https://evil.example/jwks"),
    )
    .unwrap();
    assert!(matches!(
        ApiState::load(&path, &master()),
        Err(AdminError::Storage(_))
    ));
}

#[test]
fn file_entries_are_read_only() {
    let config = config();
    let mut state = ApiState::empty();
    let e = state
        .upsert_idp(
            &config,
            &master(),
            idp_request("https://file.idp/", Some("c2VjcmV0")),
        )
        .unwrap_err();
    assert!(
        matches!(e, AdminError::Conflict(ref m) if m.contains("config file")),
        "{e}"
    );
    let e = state
        .delete_idp(&config, Some("https://file.idp/".into()), None)
        .unwrap_err();
    assert!(matches!(e, AdminError::Conflict(_)), "{e}");
    let provider = StoredProvider {
        service: "file-app".into(),
        key_id: "sbk_file".into(),
        mapping: Map::new(),
        condition: None,
    };
    assert!(matches!(
        state.upsert_provider(&config, provider),
        Err(AdminError::Conflict(_))
    ));
    assert!(matches!(
        state.delete_key(&config, "sbk_file"),
        Err(AdminError::Conflict(_))
    ));
    assert!(matches!(
        state.delete_key(&config, "sbk_nope"),
        Err(AdminError::NotFound(_))
    ));
    assert!(matches!(
        state.delete_provider(&config, "nope"),
        Err(AdminError::NotFound(_))
    ));
    assert_eq!(state, ApiState::empty());
}

#[test]
fn upserts_replace_the_entry_with_the_same_identity() {
    let config = config();
    let mut state = ApiState::empty();
    state
        .upsert_idp(
            &config,
            &master(),
            idp_request("https://api.idp/", Some("a2V5MQ")),
        )
        .unwrap();
    state
        .upsert_idp(
            &config,
            &master(),
            idp_request("https://api.idp/", Some("a2V5Mg")),
        )
        .unwrap();
    assert_eq!(state.idps.len(), 1);
    let entries = state.entries(&master()).unwrap();
    assert_eq!(entries.idps[0].1.key.as_deref(), Some("a2V5Mg"));
    let bad_service = StoredProvider {
        service: "no spaces".into(),
        key_id: "sbk_file".into(),
        mapping: Map::new(),
        condition: None,
    };
    assert!(matches!(
        state.upsert_provider(&config, bad_service),
        Err(AdminError::Invalid(_))
    ));
}

#[test]
fn a_jwks_url_at_baton_s_own_listeners_is_refused() {
    let config = Config::from_toml(
        "[proxy]\nlisten = \"0.0.0.0:18080\"\n[admin]\nlisten = \"127.0.0.1:19901\"\n",
        Path::new("."),
        &|_| None,
    )
    .unwrap();
    let mut state = ApiState::empty();
    for (url, listener) in [
        ("http://127.0.0.1:18080/.well-known/jwks.json", "proxy"),
        ("http://localhost:18080/.well-known/jwks.json", "proxy"),
        ("http://127.0.0.2:18080/.well-known/jwks.json", "proxy"),
        ("http://[::1]:18080/.well-known/jwks.json", "proxy"),
        ("http://0.0.0.0:18080/.well-known/jwks.json", "proxy"),
        ("https://127.0.0.1:18080/jwks", "proxy"),
        ("http://127.0.0.1:19901/keys", "admin"),
        ("http://[::ffff:127.0.0.1]:19901/keys", "admin"),
        ("http://0.0.0.0:19901/keys", "admin"),
    ] {
        let mut request = idp_request("https://api.idp/", None);
        request.algs = vec!["RS256".to_owned()];
        request.jwks_url = Some(url.to_owned());
        let error = state.upsert_idp(&config, &master(), request).unwrap_err();
        assert!(
            matches!(&error, AdminError::Invalid(m) if m.starts_with(&format!("jwksUrl points at baton's own {listener} listener"))),
            "{url}: {error:?}"
        );
        assert_eq!(state, ApiState::empty(), "{url}: nothing is kept");
    }
    // Another port, or the admin listener's port on another loopback address (it listens on
    // 127.0.0.1 only), reaches neither.
    for url in [
        "http://127.0.0.1:18081/jwks",
        "http://127.0.0.2:19901/jwks",
        "https://idp.example/jwks",
    ] {
        let mut request = idp_request("https://api.idp/", None);
        request.algs = vec!["RS256".to_owned()];
        request.jwks_url = Some(url.to_owned());
        let mut fresh = ApiState::empty();
        fresh
            .upsert_idp(&config, &master(), request)
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }
}

#[test]
fn only_baton_s_own_stale_temp_files_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("state.json");
    let state = ApiState::empty();
    state.save(&state_file, &master()).unwrap();
    let stale = [".baton-state.AbC123", ".baton-state.zzzzzz"];
    let unrelated = [
        ".baton-state.",
        ".baton-state.abc",
        ".baton-state.abcdefg",
        ".baton-state.abc-12",
        ".baton-state.AbC123.bak",
        "baton-state.AbC123",
        "notes.txt",
    ];
    for name in stale.iter().chain(&unrelated) {
        std::fs::write(dir.path().join(name), b"partial").unwrap();
    }
    // A directory and a symlink with matching names are not temp files.
    std::fs::create_dir(dir.path().join(".baton-state.dir123")).unwrap();
    std::os::unix::fs::symlink("notes.txt", dir.path().join(".baton-state.link12")).unwrap();

    assert_eq!(remove_stale_temp_files(&state_file).unwrap(), stale.len());
    for name in stale {
        assert!(!dir.path().join(name).exists(), "{name} stays");
    }
    for name in unrelated
        .iter()
        .chain(&[".baton-state.dir123", ".baton-state.link12"])
    {
        assert!(
            dir.path().join(name).symlink_metadata().is_ok(),
            "{name} was removed"
        );
    }
    assert_eq!(ApiState::load(&state_file, &master()).unwrap(), state);
    assert_eq!(remove_stale_temp_files(&state_file).unwrap(), 0);
}

#[test]
fn save_names_its_temp_files_with_the_pattern_clean_up_removes() {
    // The names tempfile makes with the builder `save` uses match `is_temp_file_name`.
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..20 {
        let temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .rand_bytes(TEMP_RANDOM_CHARS)
            .tempfile_in(dir.path())
            .unwrap();
        let name = temp
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(is_temp_file_name(&name), "{name}");
    }
}

#[test]
fn a_revision_is_covered_by_the_mac_and_a_reseal_opens_with_the_new_key_only() {
    let (old, new) = (Secret::new([1u8; 32]), Secret::new([2u8; 32]));
    let mut state = ApiState::empty();
    let (_, secret) = state
        .create_key(
            &old,
            "k".to_owned(),
            Vec::new(),
            std::time::SystemTime::now(),
        )
        .unwrap();
    let document = state.clone().with_revision(7).to_document(&old).unwrap();
    let read = ApiState::from_document(&document, "revision 7", &old).unwrap();
    assert_eq!(read.revision(), Some(7));
    // The same document claiming another revision no longer verifies.
    let text = String::from_utf8(document).unwrap();
    let moved = text.replace("\"revision\": 7", "\"revision\": 8");
    assert_ne!(moved, text);
    let e = ApiState::from_document(moved.as_bytes(), "revision 8", &old).unwrap_err();
    assert!(
        e.to_string()
            .contains("revision 8 does not match the master key"),
        "{e}"
    );

    let resealed = read.reseal(&old, &new).unwrap();
    let entries = resealed.entries(&new).unwrap();
    assert_eq!(
        entries.keys[0].1.secret.as_deref().map(str::as_bytes),
        Some(secret.expose())
    );
    assert!(resealed.entries(&old).is_err());
    assert!(
        read.reseal(&new, &old).is_err(),
        "a reseal needs the key it was sealed with"
    );
}
