//! State Backed's admin API on the real `baton serve`'s admin listener: `/idps`,
//! `/token-providers`, `/keys`. Entries written through it serve exchanges at once, persist in
//! the state file (secrets sealed) across a restart, and bad writes change nothing.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use support::baton::{Baton, reserve_port};
use support::{now, payload, sign_hmac};

const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";
/// 32 bytes, base64.
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const FILE_IDP_SECRET: &str = "file-idp-secret";
const API_IDP_SECRET: &str = "api-idp-secret";

/// A baton whose admin API is on, and its admin listener.
struct Admin {
    baton: Baton,
    admin_url: String,
}

fn config(admin_port: u16, proxy_port: u16, admin: &str) -> String {
    format!(
        r#"
[server]
issuer = "https://baton.test"

[proxy]
listen = "127.0.0.1:{proxy_port}"
upstream = "127.0.0.1:{upstream}"
service = "file-app"
threads = 1

[admin]
listen = "127.0.0.1:{admin_port}"
{admin}

[[keys]]
id = "sbk_file"
algorithm = "HS256"
secret = "sbsec_file_key"

[[idps]]
issuer = "https://file.idp/"
algorithms = ["HS256"]
key = "{file_idp_key}"
mapping = {{ "sub.$" = "$.sub" }}

[[token_providers]]
service = "file-app"
key = "sbk_file"
mapping = {{ "sub.$" = "$.sub" }}
"#,
        upstream = reserve_port(),
        file_idp_key = URL_SAFE_NO_PAD.encode(FILE_IDP_SECRET),
    )
}

const WRITABLE: &str = r#"token_env = "ADMIN_TOKEN"
state_file = "state.json"
master_key_env = "MASTER_KEY""#;

async fn start(dir: &Path, admin: &str, master_key: &str) -> Admin {
    let (admin_port, proxy_port) = (reserve_port(), reserve_port());
    let baton = Baton::launch(
        dir,
        ([127, 0, 0, 1], proxy_port).into(),
        &config(admin_port, proxy_port, admin),
    )
    .envs(&[("ADMIN_TOKEN", ADMIN_TOKEN), ("MASTER_KEY", master_key)])
    .start()
    .await;
    Admin {
        baton,
        admin_url: format!("http://127.0.0.1:{admin_port}"),
    }
}

impl Admin {
    /// An admin API call with the admin token; the status and the JSON body (`Null` when empty).
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(Some(ADMIN_TOKEN), method, path, body).await
    }

    async fn call_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{}{path}", self.admin_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} {text}: {e}"))
        };
        (status, json)
    }

    /// `baton_config_reloads_total` from `/metrics`: `"source outcome count"`, sorted.
    async fn reloads(&self) -> Vec<String> {
        let text = reqwest::get(format!("{}/metrics", self.admin_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut counts: Vec<String> = text
            .lines()
            .filter_map(|line| {
                let labels = line.strip_prefix("baton_config_reloads_total{")?;
                let (labels, count) = labels.split_once("} ")?;
                let label = |name: &str| {
                    labels
                        .split(',')
                        .find_map(|l| l.strip_prefix(&format!("{name}=\"")))
                        .map(|v| v.trim_end_matches('"').to_owned())
                };
                Some(format!(
                    "{} {} {count}",
                    label("source")?,
                    label("outcome")?
                ))
            })
            .collect();
        counts.sort();
        counts
    }

    /// `POST /tokens` on the proxy listener.
    async fn exchange(&self, subject_token: &str, service: &str) -> (u16, Value) {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair(
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            )
            .append_pair("subject_token", subject_token)
            .append_pair("audience", service)
            .finish();
        let response = reqwest::Client::new()
            .post(self.baton.url("/tokens"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }
}

fn subject(iss: &str, secret: &str, sub: &str) -> String {
    sign_hmac(
        secret.as_bytes(),
        Algorithm::HS256,
        &json!({ "alg": "HS256", "typ": "JWT" }),
        &json!({ "iss": iss, "sub": sub, "email": format!("{sub}@example.com"), "exp": now() + 600 }),
    )
}

/// Verifies an HS256 token with `secret` (the admin API's `key`), returning its header.
fn verify_hs256(token: &str, secret: &str) -> Value {
    let key = jsonwebtoken::DecodingKey::from_secret(secret.as_bytes());
    let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap_or_else(|e| panic!("the minted token does not verify with the key's secret: {e}"));
    support::header(token)
}

#[tokio::test]
async fn entries_written_through_the_admin_api_serve_exchanges_and_persist_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let admin = start(dir.path(), WRITABLE, MASTER_KEY).await;

    // Only with the admin token.
    for token in [None, Some("wrong-token")] {
        let (status, body) = admin.call_as(token, "GET", "/idps", None).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    }

    // The file's entries are listed, read-only.
    let (status, idps) = admin.call("GET", "/idps", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        idps,
        json!({ "idps": [{ "iss": "https://file.idp/", "algs": ["HS256"], "mapping": { "sub.$": "$.sub" }, "readOnly": true }] })
    );

    // A key, an IdP and a provider through the API.
    let (status, created) = admin
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "app key", "use": "production" })),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let key_id = created["id"].as_str().unwrap().to_owned();
    let key_secret = created["key"].as_str().unwrap().to_owned();
    assert!(key_id.starts_with("sbk_") && key_secret.starts_with("sbsec_"));
    let idp = json!({
        "iss": "https://api.idp/",
        "algs": ["HS256"],
        "key": URL_SAFE_NO_PAD.encode(API_IDP_SECRET),
        "mapping": { "sub.$": "$.sub", "email.$": "$.email" },
    });
    assert_eq!(admin.call("POST", "/idps", Some(idp)).await.0, 204);
    let provider = json!({
        "service": "api-app",
        "keyId": key_id,
        "mapping": { "sub.$": "$.sub", "email.$": "$.email" },
    });
    assert_eq!(
        admin.call("POST", "/token-providers", Some(provider)).await,
        (204, Value::Null)
    );

    // They serve at once: an API IdP's token for the API provider, signed with the API key.
    let token = subject("https://api.idp/", API_IDP_SECRET, "user-1");
    let (status, answer) = admin.exchange(&token, "api-app").await;
    assert_eq!(status, 200, "{answer}");
    let minted = answer["access_token"].as_str().unwrap();
    assert_eq!(verify_hs256(minted, &key_secret)["kid"], key_id.as_str());
    assert_eq!(
        payload(minted)["act"],
        json!({ "sub": "user-1", "email": "user-1@example.com" })
    );

    // Listed, writable; the key's secret is never listed.
    let (_, keys) = admin.call("GET", "/keys", None).await;
    let listed: Vec<(&str, bool)> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["id"].as_str().unwrap(), k["readOnly"].as_bool().unwrap()))
        .collect();
    assert_eq!(listed, [("sbk_file", true), (key_id.as_str(), false)]);
    assert!(!keys.to_string().contains(&key_secret));
    assert!(
        keys["keys"][1]["scopes"]
            .as_array()
            .unwrap()
            .contains(&json!("tokens.admin"))
    );
    let (_, idps) = admin.call("GET", "/idps", None).await;
    assert!(
        !idps
            .to_string()
            .contains(&URL_SAFE_NO_PAD.encode(API_IDP_SECRET))
    );
    assert_eq!(idps["idps"][1]["readOnly"], false);

    // Bad writes: a clear error, and nothing changes (not the state file, not what serves).
    let state_path = dir.path().join("state.json");
    let state_before = std::fs::read(&state_path).unwrap();
    let bad_mapping = json!({ "iss": "https://other.idp/", "algs": ["HS256"], "key": "c2VjcmV0", "mapping": { "sub.$": "$[" } });
    let (status, error) = admin.call("POST", "/idps", Some(bad_mapping)).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("invalid-request"))
    );
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("invalid JSONPath"),
        "{error}"
    );
    let unknown_key = json!({ "service": "x", "keyId": "sbk_missing", "mapping": {} });
    let (status, error) = admin
        .call("POST", "/token-providers", Some(unknown_key))
        .await;
    assert_eq!(status, 400);
    assert!(
        error["error"].as_str().unwrap().contains("sbk_missing"),
        "{error}"
    );
    let (status, error) = admin
        .call(
            "POST",
            "/idps",
            Some(json!({ "algs": ["HS256"], "mapping": {}, "surprise": 1 })),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    // A secret sent in the wrong place is not repeated back (serde would quote it).
    let misplaced =
        json!({ "iss": "https://x.idp/", "algs": "sbsec_misplaced_secret", "mapping": {} });
    let (status, error) = admin.call("POST", "/idps", Some(misplaced)).await;
    assert_eq!(status, 400, "{error}");
    assert!(
        !error.to_string().contains("sbsec_misplaced_secret"),
        "{error}"
    );
    assert!(
        error["error"].as_str().unwrap().contains("wrong type"),
        "{error}"
    );
    let file_idp =
        json!({ "iss": "https://file.idp/", "algs": ["HS256"], "key": "c2VjcmV0", "mapping": {} });
    let (status, error) = admin.call("POST", "/idps", Some(file_idp)).await;
    assert_eq!((status, error["code"].as_str()), (409, Some("conflict")));
    let (status, error) = admin.call("DELETE", &format!("/keys/{key_id}"), None).await;
    assert_eq!(status, 409, "a key in use cannot go: {error}");
    assert_eq!(std::fs::read(&state_path).unwrap(), state_before);
    assert_eq!(admin.exchange(&token, "api-app").await.0, 200);
    // Counted: three writes applied, four refused (the malformed body never got that far).
    assert_eq!(
        admin.reloads().await,
        ["admin applied 3", "admin rejected 4"]
    );

    // Sealed at rest: neither secret is in the state file.
    let state_text = String::from_utf8(state_before).unwrap();
    assert!(!state_text.contains(&key_secret));
    assert!(!state_text.contains(&URL_SAFE_NO_PAD.encode(API_IDP_SECRET)));
    assert!(!admin.baton.log().contains(&key_secret));

    // `baton check` sees what `baton serve` would load: the file and the state file.
    let check = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["check", "--config"])
        .arg(&admin.baton.config_path)
        .envs([("ADMIN_TOKEN", ADMIN_TOKEN), ("MASTER_KEY", MASTER_KEY)])
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{summary}");
    assert!(
        summary.contains("token providers: 2") && summary.contains(&key_id),
        "{summary}"
    );
    assert!(!summary.contains(&key_secret));

    // A restart loads them again.
    drop(admin);
    let admin = start(dir.path(), WRITABLE, MASTER_KEY).await;
    let (status, answer) = admin.exchange(&token, "api-app").await;
    assert_eq!(status, 200, "after a restart: {answer}");
    verify_hs256(answer["access_token"].as_str().unwrap(), &key_secret);

    // Deleting: provider, then its key, then the IdP; each then refuses or is gone.
    assert_eq!(
        admin
            .call("DELETE", "/token-providers/api-app", None)
            .await
            .0,
        204
    );
    let (status, answer) = admin.exchange(&token, "api-app").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_target"))
    );
    assert_eq!(
        admin
            .call("DELETE", &format!("/keys/{key_id}"), None)
            .await
            .0,
        204
    );
    let (_, keys) = admin.call("GET", "/keys", None).await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
    let name = json!({ "iss": "https://api.idp/" });
    assert_eq!(
        admin.call("DELETE", "/idps", Some(name.clone())).await.0,
        204
    );
    let (status, error) = admin.call("DELETE", "/idps", Some(name)).await;
    assert_eq!((status, error["code"].as_str()), (404, Some("not-found")));
    // Its tokens are no longer trusted (RFC 8693: an invalid subject token is invalid_request).
    let (status, answer) = admin.exchange(&token, "file-app").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (_, providers) = admin.call("GET", "/token-providers", None).await;
    assert_eq!(
        providers,
        json!({ "tokenProviders": [{ "service": "file-app", "keyId": "sbk_file", "mapping": { "sub.$": "$.sub" }, "readOnly": true }] })
    );
}

#[tokio::test]
async fn a_state_file_that_does_not_open_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let admin = start(dir.path(), WRITABLE, MASTER_KEY).await;
    let (status, _) = admin
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "k", "scopes": ["tokens.admin"] })),
        )
        .await;
    assert_eq!(status, 200);
    let config_path = admin.baton.config_path.clone();
    drop(admin);
    let state_before = std::fs::read(dir.path().join("state.json")).unwrap();
    // Another master key: baton refuses to start rather than serve without the entries.
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::from({
            let mut command = Command::new(env!("CARGO_BIN_EXE_baton"));
            command
                .args(["serve", "--config"])
                .arg(&config_path)
                .env("ADMIN_TOKEN", ADMIN_TOKEN)
                .env("MASTER_KEY", URL_SAFE_NO_PAD.encode([7u8; 32]));
            command
        })
        .kill_on_drop(true)
        .output(),
    )
    .await
    .expect("baton should exit at once")
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("does not match the master key"), "{stderr}");
    assert_eq!(
        std::fs::read(dir.path().join("state.json")).unwrap(),
        state_before
    );
}

#[tokio::test]
async fn admin_writes_build_on_the_last_loaded_file_and_reloads_keep_their_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (admin_port, proxy_port) = (reserve_port(), reserve_port());
    let original = config(admin_port, proxy_port, WRITABLE)
        .replace("[server]\n", "[server]\nwatch_config = false\n");
    let baton = Baton::launch(dir.path(), ([127, 0, 0, 1], proxy_port).into(), &original)
        .envs(&[("ADMIN_TOKEN", ADMIN_TOKEN), ("MASTER_KEY", MASTER_KEY)])
        .start()
        .await;
    let admin = Admin {
        baton,
        admin_url: format!("http://127.0.0.1:{admin_port}"),
    };
    let file_token = subject("https://file.idp/", FILE_IDP_SECRET, "user-2");
    let claims_of =
        |answer: &Value| payload(answer["access_token"].as_str().unwrap())["act"].clone();

    // An edit not reloaded yet (no SIGHUP, no watch): an admin write does not apply it.
    let file_provider =
        "service = \"file-app\"\nkey = \"sbk_file\"\nmapping = { \"sub.$\" = \"$.sub\" }";
    assert!(original.contains(file_provider));
    let edited = original.replace(
        file_provider,
        "service = \"file-app\"\nkey = \"sbk_file\"\nmapping = { \"sub.$\" = \"$.sub\", edited = true }",
    );
    admin.baton.write_config(&edited);
    let (status, created) = admin
        .call("POST", "/keys", Some(json!({ "name": "k", "use": "ci" })))
        .await;
    assert_eq!(status, 200, "{created}");
    let (status, answer) = admin.exchange(&file_token, "file-app").await;
    assert_eq!(
        (status, claims_of(&answer)),
        (200, json!({ "sub": "user-2" }))
    );

    // SIGHUP applies it and keeps the API's key.
    admin.baton.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fresh = subject("https://file.idp/", FILE_IDP_SECRET, "user-3");
        let (_, answer) = admin.exchange(&fresh, "file-app").await;
        if claims_of(&answer)["edited"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no reload: {}",
            admin.baton.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, keys) = admin.call("GET", "/keys", None).await;
    assert_eq!(keys["keys"][1]["id"], created["id"], "{keys}");

    // A broken file is refused on reload, and admin writes still build on the last good one.
    admin.baton.write_config("[proxy\nbroken = ");
    admin.baton.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !admin.baton.log().contains("configuration rejected") {
        assert!(Instant::now() < deadline, "{}", admin.baton.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let provider =
        json!({ "service": "api-app", "keyId": created["id"], "mapping": { "sub.$": "$.sub" } });
    assert_eq!(
        admin
            .call("POST", "/token-providers", Some(provider))
            .await
            .0,
        204
    );
    let (status, answer) = admin.exchange(&file_token, "api-app").await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = admin.exchange(&file_token, "file-app").await;
    assert_eq!((status, &claims_of(&answer)["edited"]), (200, &json!(true)));
    assert_eq!(
        admin.reloads().await,
        ["admin applied 2", "file applied 1", "file rejected 1"]
    );
}

#[tokio::test]
async fn without_a_token_the_admin_api_is_off_and_without_a_state_file_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let off = start(dir.path(), "", MASTER_KEY).await;
    let (status, body) = off.call("GET", "/idps", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("admin-api-off"))
    );
    assert_eq!(off.call_as(None, "GET", "/healthz", None).await.0, 200);
    drop(off);

    let dir = tempfile::tempdir().unwrap();
    let read_only = start(dir.path(), r#"token_env = "ADMIN_TOKEN""#, MASTER_KEY).await;
    assert_eq!(read_only.call("GET", "/token-providers", None).await.0, 200);
    let (status, body) = read_only
        .call("POST", "/keys", Some(json!({ "name": "k", "use": "ci" })))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("state_file"),
        "{body}"
    );
    let (status, _) = read_only.call("PUT", "/idps", None).await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_header_is_dropped() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().unwrap();
    let admin = start(dir.path(), "", MASTER_KEY).await;
    let address = admin.admin_url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buffer = Vec::new();
    // The admin listener gives a header 5 s; the connection then ends (maybe with a 408).
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut buffer))
        .await
        .expect("the half-sent request was never dropped");
    assert!(read.is_ok() || buffer.is_empty());
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let answer = String::from_utf8_lossy(&buffer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let admin = std::sync::Arc::new(start(dir.path(), WRITABLE, MASTER_KEY).await);
    let writes: Vec<_> = (0..16)
        .map(|i| {
            let admin = std::sync::Arc::clone(&admin);
            tokio::spawn(async move {
                admin
                    .call(
                        "POST",
                        "/keys",
                        Some(json!({ "name": format!("k{i}"), "use": "ci" })),
                    )
                    .await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for write in writes {
        let (status, created) = write.await.unwrap();
        assert_eq!(status, 200, "{created}");
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    // No write lost another's: all 16 are listed, and all 16 are in the file.
    let (_, keys) = admin.call("GET", "/keys", None).await;
    let listed: Vec<&str> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["id"].as_str())
        .collect();
    let state = std::fs::read_to_string(dir.path().join("state.json")).unwrap();
    for id in &ids {
        assert!(listed.contains(&id.as_str()), "{id} not listed: {keys}");
        assert!(state.contains(id.as_str()), "{id} not in the state file");
    }
    assert_eq!(admin.reloads().await, ["admin applied 16"]);
}

// --- IdP URLs through the admin API ------------------------------------------------------

/// A writable baton whose proxy listens on `proxy_host` (the admin listener on 127.0.0.1).
async fn start_with_proxy_on(dir: &Path, proxy_host: &str) -> Admin {
    let (admin_port, proxy_port) = (reserve_port(), reserve_port());
    let text = config(admin_port, proxy_port, WRITABLE).replace(
        &format!("listen = \"127.0.0.1:{proxy_port}\""),
        &format!("listen = \"{proxy_host}:{proxy_port}\""),
    );
    assert!(text.contains(&format!("{proxy_host}:{proxy_port}")));
    let baton = Baton::launch(dir, ([127, 0, 0, 1], proxy_port).into(), &text)
        .envs(&[("ADMIN_TOKEN", ADMIN_TOKEN), ("MASTER_KEY", MASTER_KEY)])
        .start()
        .await;
    Admin {
        baton,
        admin_url: format!("http://127.0.0.1:{admin_port}"),
    }
}

impl Admin {
    fn ports(&self) -> (u16, u16) {
        let admin_port = self.admin_url.rsplit(':').next().unwrap().parse().unwrap();
        (self.baton.addr.port(), admin_port)
    }

    /// `POST /idps` of an RS256 IdP with keys at `jwks_url`; the status and the error.
    async fn post_jwks_idp(&self, jwks_url: &str) -> (u16, String) {
        let idp = json!({
            "iss": "https://api.idp/",
            "algs": ["RS256"],
            "jwksUrl": jwks_url,
            "mapping": { "sub.$": "$.sub" },
        });
        let (status, body) = self.call("POST", "/idps", Some(idp)).await;
        (
            status,
            body["error"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// The admin API lists the file's IdP only, nothing was saved, and baton still serves.
    async fn assert_nothing_saved(&self, dir: &Path) {
        let (status, idps) = self.call("GET", "/idps", None).await;
        assert_eq!(status, 200);
        assert_eq!(idps["idps"].as_array().unwrap().len(), 1, "{idps}");
        assert_eq!(idps["idps"][0]["iss"], "https://file.idp/");
        let files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains("state"))
            .collect();
        assert!(files.is_empty(), "a refused write left {files:?}");
        assert_eq!(self.call_as(None, "GET", "/healthz", None).await.0, 200);
        let token = subject("https://file.idp/", FILE_IDP_SECRET, "user-1");
        assert_eq!(self.exchange(&token, "file-app").await.0, 200);
    }
}

#[tokio::test]
async fn a_jwks_url_at_baton_s_own_listeners_is_refused_and_nothing_is_saved() {
    let dir = tempfile::tempdir().unwrap();
    let admin = start_with_proxy_on(dir.path(), "127.0.0.1").await;
    let (proxy, admin_port) = admin.ports();
    for (url, listener) in [
        // Its own published keys: every token baton mints would pass as this IdP's.
        (
            format!("http://127.0.0.1:{proxy}/.well-known/jwks.json"),
            "proxy",
        ),
        (
            format!("http://localhost:{proxy}/.well-known/jwks.json"),
            "proxy",
        ),
        (
            format!("HTTP://LOCALHOST:{proxy}/.well-known/jwks.json"),
            "proxy",
        ),
        (format!("http://[::ffff:127.0.0.1]:{proxy}/jwks"), "proxy"),
        (format!("https://0.0.0.0:{proxy}/jwks"), "proxy"),
        (format!("https://127.0.0.1:{proxy}/jwks"), "proxy"),
        (format!("http://127.0.0.1:{admin_port}/keys"), "admin"),
        (format!("http://localhost:{admin_port}/idps"), "admin"),
        (format!("http://0.0.0.0:{admin_port}/idps"), "admin"),
    ] {
        let (status, error) = admin.post_jwks_idp(&url).await;
        assert_eq!(status, 400, "{url}: {error}");
        assert!(
            error.starts_with(&format!(
                "jwksUrl points at baton's own {listener} listener"
            )),
            "{url}: {error}"
        );
    }
    admin.assert_nothing_saved(dir.path()).await;
    let log = admin.baton.log();
    assert!(
        log.matches("admin API change refused").count() >= 9,
        "{log}"
    );
}

#[tokio::test]
async fn a_wildcard_proxy_listener_is_reached_by_every_local_address() {
    let dir = tempfile::tempdir().unwrap();
    let admin = start_with_proxy_on(dir.path(), "0.0.0.0").await;
    let (proxy, _) = admin.ports();
    for url in [
        format!("http://127.0.0.1:{proxy}/.well-known/jwks.json"),
        format!("http://127.0.0.2:{proxy}/.well-known/jwks.json"),
        format!("http://[::1]:{proxy}/.well-known/jwks.json"),
        format!("http://localhost:{proxy}/.well-known/jwks.json"),
    ] {
        let (status, error) = admin.post_jwks_idp(&url).await;
        assert_eq!(status, 400, "{url}: {error}");
        assert!(
            error.starts_with("jwksUrl points at baton's own proxy listener"),
            "{url}: {error}"
        );
    }
    admin.assert_nothing_saved(dir.path()).await;
}

#[tokio::test]
async fn an_http_jwks_url_beyond_loopback_is_refused_and_allow_http_is_not_taken() {
    let dir = tempfile::tempdir().unwrap();
    let admin = start_with_proxy_on(dir.path(), "127.0.0.1").await;
    let (status, error) = admin.post_jwks_idp("http://192.0.2.1/jwks.json").await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(
        error,
        "idps[iss=https://api.idp/] (admin API).jwks_url: must be https (or a loopback \
         address); allow_http is for [[idps]] entries of the config file only"
    );
    // State Backed's API has no allowHttp; baton does not add one.
    let idp = json!({
        "iss": "https://api.idp/",
        "algs": ["RS256"],
        "jwksUrl": "http://192.0.2.1/jwks.json",
        "allowHttp": true,
        "mapping": { "sub.$": "$.sub" },
    });
    let (status, body) = admin.call("POST", "/idps", Some(idp)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `allowHttp`"),
        "{body}"
    );
    admin.assert_nothing_saved(dir.path()).await;
    // An https URL elsewhere is accepted (its keys are fetched in the background).
    let (status, error) = admin.post_jwks_idp("https://127.0.0.1:9/jwks.json").await;
    assert_eq!(status, 204, "{error}");
}

// --- state file hygiene --------------------------------------------------------------------

#[tokio::test]
async fn stale_temp_files_of_interrupted_writes_are_removed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let admin = start(dir.path(), WRITABLE, MASTER_KEY).await;
    let (status, _) = admin
        .call("POST", "/keys", Some(json!({ "name": "k", "use": "ci" })))
        .await;
    assert_eq!(status, 200);
    drop(admin);
    let state_path = dir.path().join("state.json");
    let state = std::fs::read(&state_path).unwrap();

    // What a kill -9 between creating the temp file and renaming it leaves, and files that
    // only look like it.
    let stale = [".baton-state.a1B2c3", ".baton-state.XYZ789"];
    let unrelated = [
        ".baton-state.a1B2c3.keep",
        ".baton-state.short",
        "baton-state.a1B2c3",
        "state.json.bak",
    ];
    for name in stale.iter().chain(&unrelated) {
        std::fs::write(dir.path().join(name), b"{\"version\":1,\"idps\":[").unwrap();
    }
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(elsewhere.path().join(".baton-state.a1B2c3"), b"x").unwrap();

    let admin = start(dir.path(), WRITABLE, MASTER_KEY).await;
    for name in stale {
        assert!(!dir.path().join(name).exists(), "{name} is still there");
    }
    for name in unrelated {
        assert!(dir.path().join(name).exists(), "{name} was removed");
    }
    assert!(elsewhere.path().join(".baton-state.a1B2c3").exists());
    assert_eq!(std::fs::read(&state_path).unwrap(), state);
    let log = admin.baton.log();
    assert!(
        log.lines().any(|line| line
            .contains("removed stale temp files of interrupted state writes")
            && line.contains("removed=2")),
        "{log}"
    );
    // The state still loads and takes writes.
    let (_, keys) = admin.call("GET", "/keys", None).await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2, "{keys}");
    let (status, _) = admin
        .call("POST", "/keys", Some(json!({ "name": "k2", "use": "ci" })))
        .await;
    assert_eq!(status, 200);
}
