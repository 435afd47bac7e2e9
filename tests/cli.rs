//! The real `baton` binary: `check`, `explain`, `keys generate`.

mod support;

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use jsonwebtoken::Algorithm;
use serde_json::json;
use support::{JwksServer, TestKey, now};

fn baton(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(args)
        .env("CLI_TEST_KEY", "sbsec_cli_test_secret")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn write_config(dir: &std::path::Path, jwks_url: &str) -> String {
    let path = dir.join("baton.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[proxy]
service = "app"

[[keys]]
id = "sbk_cli"
algorithm = "HS256"
secret_env = "CLI_TEST_KEY"

[[idps]]
issuer = "https://idp.test"
audience = "app"
jwks_url = "{jwks_url}"
mapping = {{ "sub.$" = "$.sub", "email.$" = "$.email" }}

[[token_providers]]
service = "app"
key = "sbk_cli"
mapping = {{ "sub.$" = "$.sub", "mail.$" = "$.email" }}
"#
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn check_summarises_a_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "http://127.0.0.1:9/jwks.json");
    let output = baton(&["check", "--config", &config], None);
    assert!(output.status.success(), "{}", text(&output));
    let shown = text(&output);
    assert!(
        shown.contains("idps: 1") && shown.contains("token providers: 1"),
        "{shown}"
    );
    assert!(!shown.contains("sbsec_cli_test_secret"), "{shown}");
}

#[test]
fn check_prints_every_error_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[idps]]\nmapping = {}\njwks_url = \"https://a/j\"\n\n[[token_providers]]\nservice = \"x y\"\nkey = \"none\"\nmapping = {}\n",
    )
    .unwrap();
    let output = baton(&["check", "--config", path.to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(1));
    let shown = text(&output);
    assert!(shown.contains("3 errors"), "{shown}");
    assert!(
        shown.contains("1:1: idps[0]: an IdP needs an issuer"),
        "{shown}"
    );
    assert!(shown.contains("5:1: token_providers[0].service"), "{shown}");
    assert!(shown.contains("5:1: token_providers[0].key"), "{shown}");
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_shows_steps_and_claims_but_never_the_token() {
    let key = TestKey::generate(Algorithm::RS256, "k1");
    let server = JwksServer::start(vec![key.jwk.clone()]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server.jwks_url());
    let token = key.sign(&json!({
        "iss": "https://idp.test", "aud": "app", "sub": "user-42",
        "email": "u@example.com", "exp": now() + 600
    }));

    let ok = tokio::task::spawn_blocking({
        let (config, token) = (config.clone(), token.clone());
        move || {
            baton(
                &["explain", "--config", &config, "--token", "-"],
                Some(&token),
            )
        }
    })
    .await
    .unwrap();
    let shown = text(&ok);
    assert!(ok.status.success(), "{shown}");
    assert!(
        shown.contains("select IdP") && shown.contains("IdP https://idp.test"),
        "{shown}"
    );
    assert!(shown.contains("\"mail\": \"u@example.com\""), "{shown}");
    assert!(!shown.contains(&token), "explain printed the token");
    assert!(
        !shown.contains(token.split('.').nth(2).unwrap()),
        "explain printed the signature"
    );

    let expired = key
        .sign(&json!({ "iss": "https://idp.test", "aud": "app", "sub": "u", "exp": now() - 3600 }));
    let refused = tokio::task::spawn_blocking(move || {
        baton(&["explain", "--config", &config, "--token", &expired], None)
    })
    .await
    .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused).contains("refused at stage `time claims`"),
        "{}",
        text(&refused)
    );
}

#[test]
fn keys_generate_makes_working_keys() {
    let hmac = baton(&["keys", "generate", "--alg", "HS256"], None);
    assert!(hmac.status.success());
    let shown = String::from_utf8(hmac.stdout).unwrap();
    assert!(
        shown.contains("key id: sbk_") && shown.contains("secret: sbsec_"),
        "{shown}"
    );

    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("es256.pem");
    let es = baton(
        &[
            "keys",
            "generate",
            "--alg",
            "ES256",
            "--out",
            pem.to_str().unwrap(),
        ],
        None,
    );
    assert!(es.status.success(), "{}", text(&es));
    let config = dir.path().join("keys.toml");
    std::fs::write(
        &config,
        "[[keys]]\nid = \"k\"\nalgorithm = \"ES256\"\nprivate_key_file = \"es256.pem\"\n",
    )
    .unwrap();
    let check = baton(&["check", "--config", config.to_str().unwrap()], None);
    assert!(check.status.success(), "{}", text(&check));

    let none = baton(&["keys", "generate", "--alg", "none"], None);
    assert!(!none.status.success());
}

/// The config of [`write_config`] with its `[[idps]]` key source lines replaced by `idp`.
fn write_idp_config(dir: &std::path::Path, idp: &str) -> String {
    let path = write_config(dir, "https://placeholder.test/jwks.json");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "issuer = \"https://idp.test\"\naudience = \"app\"\njwks_url = \"https://placeholder.test/jwks.json\"",
        &format!("audience = \"app\"\n{idp}"),
    );
    assert!(!text.contains("placeholder"), "{text}");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_refuses_plain_http_beyond_loopback_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (idp, error) in [
        (
            "jwks_url = \"http://idp.example/.well-known/jwks.json\"",
            "idps[0].jwks_url: must be https (or a loopback address) unless allow_http = true",
        ),
        (
            "issuer = \"http://keycloak.internal/realms/app\"\ndiscovery = true",
            "idps[0].issuer: must be https (or a loopback address) unless allow_http = true \
             (discovery fetches http://keycloak.internal/realms/app/.well-known/openid-configuration)",
        ),
    ] {
        let config = write_idp_config(dir.path(), idp);
        let output = baton(&["check", "--config", &config], None);
        let shown = text(&output);
        assert_eq!(output.status.code(), Some(1), "{shown}");
        assert!(shown.contains("1 error in the configuration"), "{shown}");
        assert!(shown.contains(error), "{shown}");
        assert!(!shown.contains(": ok"), "{shown}");
    }
}

#[test]
fn check_accepts_plain_http_with_allow_http_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    for idp in [
        "jwks_url = \"http://idp.example/.well-known/jwks.json\"\nallow_http = true",
        "issuer = \"http://keycloak.internal/realms/app\"\ndiscovery = true\nallow_http = true",
    ] {
        let config = write_idp_config(dir.path(), idp);
        let output = baton(&["check", "--config", &config], None);
        let shown = text(&output);
        assert!(output.status.success(), "{shown}");
        assert!(shown.contains(": ok"), "{shown}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.lines().any(
                |line| line.starts_with("warning: idps[0]: allow_http = true")
                    && line.contains("trusted network only")
            ),
            "{stderr}"
        );
    }
    // https and loopback http need no allow_http, and get no warning.
    for idp in [
        "jwks_url = \"https://idp.example/.well-known/jwks.json\"",
        "jwks_url = \"http://localhost:8081/jwks.json\"",
        "issuer = \"http://127.0.0.1:8081/realms/app\"\ndiscovery = true",
    ] {
        let config = write_idp_config(dir.path(), idp);
        let output = baton(&["check", "--config", &config], None);
        assert!(output.status.success(), "{}", text(&output));
        assert!(!text(&output).contains("allow_http"), "{}", text(&output));
    }
}

/// The config of [`write_config`] with `[proxy] tls` naming `tls/cert.pem` and `tls/key.pem`
/// (relative to the config file), which hold `cert` and `key` when given.
fn write_tls_config(dir: &std::path::Path, cert: Option<&str>, key: Option<&str>) -> String {
    let path = write_config(dir, "http://127.0.0.1:9/jwks.json");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[proxy]\n",
        "[proxy]\nlisten = \"127.0.0.1:0\"\ntls = { cert_file = \"tls/cert.pem\", key_file = \"tls/key.pem\" }\n",
    );
    std::fs::write(&path, text).unwrap();
    std::fs::create_dir_all(dir.join("tls")).unwrap();
    if let Some(cert) = cert {
        std::fs::write(dir.join("tls/cert.pem"), cert).unwrap();
    }
    if let Some(key) = key {
        std::fs::write(dir.join("tls/key.pem"), key).unwrap();
    }
    path
}

/// No line of the base64 body of `key_pem` appears in `text`.
fn assert_no_key_material(text: &str, key_pem: &str) {
    for line in key_pem.lines().filter(|line| !line.starts_with("-----")) {
        let line = line.trim();
        assert!(
            line.len() < 16 || !text.contains(line),
            "key material in the output:\n{text}"
        );
    }
}

#[test]
fn check_validates_the_tls_pair_and_names_its_place() {
    let ca = support::tls::TestCa::new();
    let leaf = ca.leaf("baton", 1);
    let stranger = ca.leaf("somebody else", 2);

    let dir = tempfile::tempdir().unwrap();
    let config = write_tls_config(dir.path(), Some(&leaf.chain_pem), Some(&leaf.key_pem));
    let output = baton(&["check", "--config", &config], None);
    let shown = text(&output);
    assert!(output.status.success(), "{shown}");
    assert!(shown.contains("proxy tls: "), "{shown}");
    assert_no_key_material(&shown, &leaf.key_pem);

    // A key the certificate does not certify.
    let dir = tempfile::tempdir().unwrap();
    let config = write_tls_config(dir.path(), Some(&leaf.chain_pem), Some(&stranger.key_pem));
    let output = baton(&["check", "--config", &config], None);
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("proxy.tls.key_file: the private key in ")
            && shown.contains("does not match the certificate in "),
        "{shown}"
    );
    assert_no_key_material(&shown, &stranger.key_pem);

    // A missing certificate, a key file holding a certificate, a certificate file that is
    // not PEM: each named by its field.
    for (cert, key, error) in [
        (
            None,
            Some(leaf.key_pem.as_str()),
            "proxy.tls.cert_file: cannot read ",
        ),
        (
            Some(leaf.chain_pem.as_str()),
            Some(leaf.chain_pem.as_str()),
            "proxy.tls.key_file: ",
        ),
        (
            Some("not a certificate"),
            Some(leaf.key_pem.as_str()),
            "proxy.tls.cert_file: ",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = write_tls_config(dir.path(), cert, key);
        let output = baton(&["check", "--config", &config], None);
        let shown = text(&output);
        assert_eq!(output.status.code(), Some(1), "{shown}");
        assert!(shown.contains("1 error in the configuration"), "{shown}");
        assert!(shown.contains(error), "{error}: {shown}");
        assert_no_key_material(&shown, &leaf.key_pem);
    }

    // The table takes the two files and nothing else.
    let dir = tempfile::tempdir().unwrap();
    let config = write_tls_config(dir.path(), Some(&leaf.chain_pem), Some(&leaf.key_pem));
    let text_with_extra = std::fs::read_to_string(&config).unwrap().replace(
        "key_file = \"tls/key.pem\" }",
        "key_file = \"tls/key.pem\", ca_file = \"ca.pem\" }",
    );
    std::fs::write(&config, text_with_extra).unwrap();
    let output = baton(&["check", "--config", &config], None);
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert!(shown.contains("unknown field `ca_file`"), "{shown}");
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_refuses_to_start_with_a_tls_key_that_does_not_match() {
    let ca = support::tls::TestCa::new();
    let leaf = ca.leaf("baton", 1);
    let stranger = ca.leaf("somebody else", 2);
    let dir = tempfile::tempdir().unwrap();
    let config = write_tls_config(dir.path(), Some(&leaf.chain_pem), Some(&stranger.key_pem));
    let log = dir.path().join("serve.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["serve", "--config", &config])
        .env("CLI_TEST_KEY", "sbsec_cli_test_secret")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let mut process = support::baton::ChildGuard::new("baton serve", child, None, log);
    let status = process
        .wait_exit(std::time::Duration::from_secs(30))
        .await
        .expect("baton serve exits when its TLS key does not match");
    let shown = process.log();
    assert!(!status.success(), "{shown}");
    assert!(
        shown.contains("proxy.tls.key_file: the private key in ")
            && shown.contains("does not match the certificate in "),
        "{shown}"
    );
    assert_no_key_material(&shown, &stranger.key_pem);
    assert_no_key_material(&shown, &leaf.key_pem);
}

/// Runs the openssl CLI in `dir`, panicking with its output when it fails.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        text(&output)
    );
}

#[test]
fn check_accepts_pkcs1_rsa_and_sec1_ec_keys_written_by_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    // `-traditional` writes `BEGIN RSA PRIVATE KEY` (PKCS#1); `ecparam -genkey` writes
    // `BEGIN EC PRIVATE KEY` (SEC1).
    openssl(&tls, &["genrsa", "-traditional", "-out", "rsa.pem", "2048"]);
    openssl(
        &tls,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ec.pem",
        ],
    );
    for (key, header) in [
        ("rsa.pem", "-----BEGIN RSA PRIVATE KEY-----"),
        ("ec.pem", "-----BEGIN EC PRIVATE KEY-----"),
    ] {
        let pem = std::fs::read_to_string(tls.join(key)).unwrap();
        assert!(pem.starts_with(header), "{pem:.40}");
        openssl(
            &tls,
            &[
                "req",
                "-x509",
                "-key",
                key,
                "-out",
                "cert.pem",
                "-subj",
                "/CN=localhost",
                "-days",
                "2",
            ],
        );
        let cert = std::fs::read_to_string(tls.join("cert.pem")).unwrap();
        let config = write_tls_config(dir.path(), Some(&cert), Some(&pem));
        let output = baton(&["check", "--config", &config], None);
        let shown = text(&output);
        assert!(output.status.success(), "{key}: {shown}");
        assert_no_key_material(&shown, &pem);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_takes_an_actor_token_from_a_file_or_stdin() {
    let key = TestKey::generate(Algorithm::RS256, "k1");
    let server = JwksServer::start(vec![key.jwk.clone()]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server.jwks_url());
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&config)
        .unwrap();
    file.write_all(
        br#"
[[token_providers]]
service = "delegated"
key = "sbk_cli"
profile = "access_token"
delegation = true
mapping = { "sub.$" = "$.sub", "actor_sub.$" = "$.actor.sub" }
"#,
    )
    .unwrap();
    let claims = |sub: &str| json!({ "iss": "https://idp.test", "aud": "app", "sub": sub, "exp": now() + 600 });
    let subject = key.sign(&claims("user-42"));
    let actor = key.sign(&claims("svc-7"));
    let actor_file = dir.path().join("actor.jwt");
    std::fs::write(&actor_file, format!("{actor}\n")).unwrap();
    let actor_path = actor_file.to_str().unwrap().to_owned();

    let run = |args: Vec<String>, stdin: Option<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            baton(&args, stdin.as_deref())
        })
    };
    let args = |service: &str, token: &str, actor: &str| -> Vec<String> {
        [
            "explain",
            "--config",
            &config,
            "--service",
            service,
            "--token",
            token,
            "--actor-token",
            actor,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let ok = run(args("delegated", "-", &actor_path), Some(subject.clone()))
        .await
        .unwrap();
    let shown = text(&ok);
    assert!(ok.status.success(), "{shown}");
    assert!(shown.contains("actor"), "{shown}");
    assert!(shown.contains("\"actor_sub\": \"svc-7\""), "{shown}");
    assert!(!shown.contains(&actor), "explain printed the actor token");

    let ok = run(args("delegated", &subject, "-"), Some(actor.clone()))
        .await
        .unwrap();
    assert!(ok.status.success(), "{}", text(&ok));

    let refused = run(args("app", &subject, &actor_path), None).await.unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused).contains("refused at stage `delegation`"),
        "{}",
        text(&refused)
    );
}

#[test]
fn init_writes_a_config_and_a_private_key_that_check_accepts_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gh.toml");
    let out_arg = out.to_str().unwrap();
    let args = [
        "init",
        "--preset",
        "github-actions",
        "--audience",
        "https://github.com/acme",
        "--service",
        "deploy",
        "--out",
        out_arg,
    ];
    let written = baton(&args, None);
    assert!(written.status.success(), "{}", text(&written));
    let key = dir.path().join("gh-signing-key.pem");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the private key is readable by others");
    let config = std::fs::read_to_string(&out).unwrap();
    assert!(
        config.contains("claims.repository_owner == \"acme\""),
        "{config}"
    );
    let checked = baton(&["check", "--config", out_arg], None);
    assert!(checked.status.success(), "{}", text(&checked));
    assert!(
        text(&checked).contains("deploy (key sbk_"),
        "{}",
        text(&checked)
    );

    // A second run leaves both files as they were.
    let before = (std::fs::read(&out).unwrap(), std::fs::read(&key).unwrap());
    let again = baton(&args, None);
    assert!(!again.status.success());
    assert!(
        text(&again).contains("never overwrites"),
        "{}",
        text(&again)
    );
    assert_eq!(
        before,
        (std::fs::read(&out).unwrap(), std::fs::read(&key).unwrap())
    );
}

#[test]
fn init_names_missing_flags_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("baton.toml");
    let missing = baton(
        &[
            "init",
            "--preset",
            "keycloak",
            "--out",
            out.to_str().unwrap(),
        ],
        None,
    );
    assert!(!missing.status.success());
    let shown = text(&missing);
    assert!(
        shown.contains("--preset keycloak needs --issuer") && shown.contains("--audience"),
        "{shown}"
    );
    let unknown = baton(
        &["init", "--preset", "okta", "--out", out.to_str().unwrap()],
        None,
    );
    assert!(
        text(&unknown).contains("expected one of: auth0, cognito"),
        "{}",
        text(&unknown)
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "files were written"
    );
}
