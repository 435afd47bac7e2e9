//! Tokens baton mints, verified by an implementation that is not baton's: Python's PyJWT
//! (`tests/interop/verify_pyjwt.py`). python3 with `pyjwt[crypto]` is required; when it is
//! missing these tests fail, they never skip.
mod support;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use baton::config::Config;
use baton::exchange::{Exchanger, ExchangerOptions};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use support::{JwksServer, TestKey, header, now, payload};

const IDP_ISSUER: &str = "https://idp.example.com";
const IDP_AUDIENCE: &str = "baton-interop";
const BATON_ISSUER: &str = "https://baton.test";
const AT_AUDIENCE: &str = "https://api.example.com";

/// What PyJWT said.
struct PyJwt {
    code: i32,
    stdout: String,
    stderr: String,
}

fn script() -> String {
    format!(
        "{}/tests/interop/verify_pyjwt.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Runs the PyJWT script on `job`. Panics (fails the test) when python3 or PyJWT is missing
/// or the job is malformed: those are never a verification result.
fn pyjwt(job: &Value) -> PyJwt {
    let mut child = Command::new("python3")
        .arg(script())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run python3 ({e}): the PyJWT interop tests need python3 with \
                 `pip install 'pyjwt[crypto]'`"
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let result = PyJwt {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    match result.code {
        0 | 1 => result,
        3 => panic!(
            "PyJWT is not available: {}\nThe interop tests need `pip install 'pyjwt[crypto]'`.",
            result.stderr.trim()
        ),
        code => panic!(
            "the PyJWT script failed (exit {code}), not a verification result:\n{}",
            result.stderr
        ),
    }
}

/// Runs PyJWT and insists it verified; returns the verified (header, payload).
fn pyjwt_accepts(job: &Value) -> (Value, Value) {
    let result = pyjwt(job);
    assert_eq!(
        result.code, 0,
        "PyJWT refused a token baton minted: {}",
        result.stderr
    );
    let verified: Value = serde_json::from_str(&result.stdout)
        .unwrap_or_else(|e| panic!("PyJWT output is not JSON ({e}): {}", result.stdout));
    (verified["header"].clone(), verified["payload"].clone())
}

/// An IdP (RS256 over a real JWKS), an inline-secret HS256 key with a `statebacked`
/// provider, and ES256, RS256 and EdDSA keys from PEM files with `access_token` providers.
struct Fixture {
    idp_key: TestKey,
    _idp: JwksServer,
    _dir: tempfile::TempDir,
    hmac_id: String,
    hmac_secret: String,
    exchanger: Exchanger,
}

const ASYMMETRIC: [(&str, Algorithm, &str); 3] = [
    ("at-es256", Algorithm::ES256, "sbk_interop_es256"),
    ("at-rs256", Algorithm::RS256, "sbk_interop_rs256"),
    ("at-eddsa", Algorithm::EdDSA, "sbk_interop_eddsa"),
];

impl Fixture {
    async fn new() -> Self {
        let idp_key = TestKey::generate(Algorithm::RS256, "idp-k1");
        let idp = JwksServer::start(vec![idp_key.jwk.clone()]).await;
        let dir = tempfile::tempdir().unwrap();
        let hmac = baton::keygen::generate(Algorithm::HS256).unwrap();
        let hmac_secret = String::from_utf8(hmac.material.expose().to_vec()).unwrap();
        assert!(hmac.id.starts_with("sbk_") && hmac_secret.starts_with("sbsec_"));

        let mut source = format!(
            r#"
[server]
issuer = "{BATON_ISSUER}"

[[keys]]
id = "{}"
algorithm = "HS256"
secret = "{hmac_secret}"
"#,
            hmac.id
        );
        for (_, alg, id) in ASYMMETRIC {
            let pem = TestKey::generate(alg, id).private_pem;
            let file = dir.path().join(format!("{id}.pem"));
            std::fs::write(&file, pem).unwrap();
            source.push_str(&format!(
                r#"
[[keys]]
id = "{id}"
algorithm = "{}"
private_key_file = "{}"
"#,
                baton::algorithm::name(alg),
                file.display()
            ));
        }
        source.push_str(&format!(
            r#"
[[idps]]
name = "idp"
issuer = "{IDP_ISSUER}"
audience = "{IDP_AUDIENCE}"
algorithms = ["RS256"]
jwks_url = "{}"
mapping = {{ "sub.$" = "$.sub", "email.$" = "$.email", "roles.$" = "$.roles", "tenant" = "acme" }}

[[token_providers]]
service = "sb"
key = "{}"
mapping = {{ "user.$" = "$.sub", "email.$" = "$.email", "roles.$" = "$.roles", "org.$" = "$.tenant" }}
"#,
            idp.jwks_url(),
            hmac.id
        ));
        for (service, _, id) in ASYMMETRIC {
            source.push_str(&format!(
                r#"
[[token_providers]]
service = "{service}"
key = "{id}"
profile = "access_token"
audience = "{AT_AUDIENCE}"
ttl = "15m"
mapping = {{ "sub.$" = "$.sub", "email.$" = "$.email", "roles.$" = "$.roles", "scope" = "read write", "tenant.$" = "$.tenant" }}
"#
            ));
        }
        let config = Config::from_toml(&source, dir.path(), &|_| None)
            .unwrap_or_else(|e| panic!("config refused: {e}"));
        let exchanger = Exchanger::new(config, ExchangerOptions::default()).unwrap();
        Self {
            idp_key,
            _idp: idp,
            _dir: dir,
            hmac_id: hmac.id,
            hmac_secret,
            exchanger,
        }
    }

    fn subject_token(&self) -> String {
        let now = now();
        self.idp_key.sign(&json!({
            "iss": IDP_ISSUER,
            "aud": IDP_AUDIENCE,
            "sub": "user-42",
            "email": "ada@example.com",
            "roles": ["admin", "dev"],
            "iat": now,
            "exp": now + 600,
            // Distinct subject tokens, so a second exchange misses the minted-token cache.
            "jti": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
                .to_string(),
        }))
    }

    async fn mint(&self, service: &str) -> String {
        self.exchanger
            .exchange(&self.subject_token(), service)
            .await
            .unwrap_or_else(|e| panic!("exchange for {service} failed: {e}"))
            .minted
            .token()
            .to_owned()
    }

    /// The public JWK baton derives for key `id`.
    fn public_jwk(&self, id: &str) -> Value {
        let config = self.exchanger.config();
        let key = config
            .keys
            .iter()
            .find(|k| k.id() == id)
            .unwrap_or_else(|| panic!("no key {id}"));
        let jwk =
            serde_json::to_value(key.public_jwk().expect("an asymmetric key has a JWK")).unwrap();
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(
                jwk.get(private).is_none(),
                "the public JWK of {id} carries `{private}`: {jwk}"
            );
        }
        jwk
    }

    fn statebacked_job(&self, token: &str, secret: &str) -> Value {
        json!({
            "token": token,
            "key_kind": "hmac",
            "secret": secret,
            "algorithms": ["HS256"],
            "audience": "https://api.statebacked.dev/",
            "issuer": BATON_ISSUER,
        })
    }
}

#[tokio::test]
async fn statebacked_hs256_verifies_with_pyjwt() {
    let fixture = Fixture::new().await;
    let token = fixture.mint("sb").await;
    let (header, claims) = pyjwt_accepts(&fixture.statebacked_job(&token, &fixture.hmac_secret));

    assert_eq!(header, json!({ "alg": "HS256", "kid": fixture.hmac_id }));
    assert_eq!(
        claims["act"],
        json!({
            "user": "user-42",
            "email": "ada@example.com",
            "roles": ["admin", "dev"],
            "org": "acme",
        })
    );
    assert_eq!(claims["aud"], "https://api.statebacked.dev/");
    assert_eq!(claims["iss"], BATON_ISSUER);
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    let now = now();
    assert!(iat <= now && iat + 60 >= now, "iat {iat}, now {now}");
    // Capped by the subject token's exp (now + 600), under the default 1 h ttl.
    assert!(exp > iat && exp <= now + 600, "exp {exp}, iat {iat}");
    let mut keys: Vec<&str> = claims
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["act", "aud", "exp", "iat", "iss"]);
    // What PyJWT verified is what baton put in the token.
    assert_eq!(claims, payload(&token));
}

#[tokio::test]
async fn pyjwt_rejects_the_statebacked_token_under_another_secret() {
    let fixture = Fixture::new().await;
    let token = fixture.mint("sb").await;
    let other = String::from_utf8(
        baton::keygen::generate(Algorithm::HS256)
            .unwrap()
            .material
            .expose()
            .to_vec(),
    )
    .unwrap();
    assert_ne!(other, fixture.hmac_secret);
    let result = pyjwt(&fixture.statebacked_job(&token, &other));
    assert_eq!(
        result.code, 1,
        "PyJWT accepted a token under the wrong secret: {}",
        result.stdout
    );
    assert!(
        result.stderr.contains("InvalidSignatureError"),
        "refused for the wrong reason: {}",
        result.stderr
    );

    // And the wrong audience is refused too (PyJWT really checks what the job says).
    let mut job = fixture.statebacked_job(&token, &fixture.hmac_secret);
    job["audience"] = json!("https://someone-else.example/");
    let result = pyjwt(&job);
    assert_eq!(result.code, 1);
    assert!(
        result.stderr.contains("InvalidAudienceError"),
        "{}",
        result.stderr
    );
}

async fn access_token_verifies_with_pyjwt(service: &str) {
    let fixture = Fixture::new().await;
    let (_, alg, key_id) = ASYMMETRIC
        .iter()
        .find(|(s, _, _)| *s == service)
        .copied()
        .unwrap();
    let alg_name = baton::algorithm::name(alg);
    let token = fixture.mint(service).await;
    let jwk = fixture.public_jwk(key_id);
    assert_eq!(jwk["kid"], key_id);
    assert_eq!(jwk["alg"], alg_name);

    let job = json!({
        "token": token,
        "key_kind": "jwk",
        "jwk": jwk,
        "algorithms": [alg_name],
        "audience": AT_AUDIENCE,
        "issuer": BATON_ISSUER,
    });
    let (verified_header, claims) = pyjwt_accepts(&job);

    assert_eq!(
        verified_header,
        json!({ "alg": alg_name, "kid": key_id, "typ": "at+jwt" })
    );
    assert_eq!(verified_header, header(&token));
    assert_eq!(claims["sub"], "user-42");
    assert_eq!(claims["email"], "ada@example.com");
    assert_eq!(claims["roles"], json!(["admin", "dev"]));
    assert_eq!(claims["scope"], "read write");
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(claims["iss"], BATON_ISSUER);
    assert_eq!(claims["aud"], AT_AUDIENCE);
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    let now = now();
    assert!(iat <= now && iat + 60 >= now, "iat {iat}, now {now}");
    // ttl 15m, under the subject token's 10 minutes left: the subject's exp wins.
    assert!(exp > iat && exp <= now + 600, "exp {exp}, iat {iat}");
    let jti = claims["jti"].as_str().expect("a string jti");
    assert!(jti.len() >= 16, "jti {jti:?}");
    let mut keys: Vec<&str> = claims
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "aud", "email", "exp", "iat", "iss", "jti", "roles", "scope", "sub", "tenant"
        ]
    );
    assert_eq!(claims, payload(&token));

    // Each minted token has its own jti (a new subject token misses the cache).
    let second = payload(&fixture.mint(service).await);
    assert_ne!(second["jti"], claims["jti"]);

    // PyJWT refuses the token under another key of the same algorithm.
    let stranger = TestKey::generate(alg, key_id);
    let mut job = job;
    job["jwk"] = stranger.jwk;
    let result = pyjwt(&job);
    assert_eq!(
        result.code, 1,
        "PyJWT accepted under a stranger's key: {}",
        result.stdout
    );
    assert!(
        result.stderr.contains("InvalidSignatureError"),
        "{}",
        result.stderr
    );
}

#[tokio::test]
async fn access_token_es256_verifies_with_pyjwt() {
    access_token_verifies_with_pyjwt("at-es256").await;
}

#[tokio::test]
async fn access_token_rs256_verifies_with_pyjwt() {
    access_token_verifies_with_pyjwt("at-rs256").await;
}

#[tokio::test]
async fn access_token_eddsa_verifies_with_pyjwt() {
    access_token_verifies_with_pyjwt("at-eddsa").await;
}

#[test]
fn the_pyjwt_script_exists() {
    assert!(Path::new(&script()).is_file(), "missing {}", script());
}
