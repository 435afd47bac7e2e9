//! Delegation (RFC 8693 `actor_token`) end to end: the real `baton serve` binary, two real
//! JWKS servers (a user IdP and a workload IdP), real HTTP; the minted tokens' `act` read
//! by PyJWT after it verified them (`tests/interop/verify_pyjwt.py`), and one exchange
//! driven by google-auth's STS client (`tests/interop/sts_google_auth.py`). python3 with
//! `pyjwt[crypto]` and `google-auth[requests]` is required (`scripts/test.sh` installs
//! them); when missing these tests fail, they never skip.
mod support;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use support::baton::{Baton, reserve_addr, reserve_port};
use support::http::Answer;
use support::{JwksServer, TestKey, now, payload};

const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const FORM: &str = "application/x-www-form-urlencoded";

/// The users' IdP (subject tokens).
const USERS_ISS: &str = "https://users.idp.test";
/// The workloads' IdP (actor tokens).
const WORKLOADS_ISS: &str = "https://workloads.idp.test";
const AUD: &str = "baton-delegation";
const BATON_ISS: &str = "https://baton.test";

/// baton with two IdPs and these providers (all ES256, `sbk_es`):
/// - `api`: `access_token`, `delegation = true`, mapping copies `$.actor.sub`;
/// - `api-guarded`: as `api`, with a condition on `actor.sub`;
/// - `sb`: `statebacked`, `delegation = true`, puts the actor's claims in its `act`;
/// - `plain`: `access_token` without delegation.
struct Fixture {
    baton: Baton,
    http: reqwest::Client,
    users: TestKey,
    workloads: TestKey,
    _users_jwks: JwksServer,
    _workloads_jwks: JwksServer,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> Self {
        let users = TestKey::generate(Algorithm::RS256, "users-1");
        let workloads = TestKey::generate(Algorithm::RS256, "workloads-1");
        let es = TestKey::generate(Algorithm::ES256, "sbk_es");
        let users_jwks = JwksServer::start(vec![users.jwk.clone()]).await;
        let workloads_jwks = JwksServer::start(vec![workloads.jwk.clone()]).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("es.pem"), &es.private_pem).unwrap();
        let addr = reserve_addr();
        let config = format!(
            r#"
[server]
issuer = "{BATON_ISS}"

[proxy]
listen = "{addr}"
service = "api"

[admin]
listen = "127.0.0.1:{admin_port}"

[[keys]]
id = "sbk_es"
algorithm = "ES256"
private_key_file = "es.pem"

[[idps]]
name = "users"
issuer = "{USERS_ISS}"
audience = "{AUD}"
algorithms = ["RS256"]
jwks_url = "{users_url}"
mapping = {{ "sub.$" = "$.sub", "email.$" = "$.email" }}

[[idps]]
name = "workloads"
issuer = "{WORKLOADS_ISS}"
audience = "{AUD}"
algorithms = ["RS256"]
jwks_url = "{workloads_url}"
mapping = {{ "sub.$" = "$.sub", "team.$" = "$.team" }}
condition = 'claims.team != "banned"'

[[token_providers]]
service = "api"
key = "sbk_es"
profile = "access_token"
delegation = true
mapping = {{ "sub.$" = "$.sub", "email.$" = "$.email", "actor_team.$" = "$.actor.team" }}

[[token_providers]]
service = "api-guarded"
key = "sbk_es"
profile = "access_token"
delegation = true
mapping = {{ "sub.$" = "$.sub" }}
condition = 'actor != null && actor.sub == "svc-billing"'

[[token_providers]]
service = "sb"
key = "sbk_es"
delegation = true
mapping = {{ "user.$" = "$.sub", "actor.$" = "$.actor" }}

[[token_providers]]
service = "plain"
key = "sbk_es"
profile = "access_token"
mapping = {{ "sub.$" = "$.sub" }}
"#,
            admin_port = reserve_port(),
            users_url = users_jwks.jwks_url(),
            workloads_url = workloads_jwks.jwks_url(),
        );
        let baton = Baton::launch(dir.path(), addr, &config).start().await;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Self {
            baton,
            http,
            users,
            workloads,
            _users_jwks: users_jwks,
            _workloads_jwks: workloads_jwks,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.baton.addr)
    }

    /// A user's token (subject), with `extra` claims.
    fn user(&self, sub: &str, extra: &Value) -> String {
        let mut claims = json!({
            "iss": USERS_ISS, "aud": AUD, "sub": sub, "email": format!("{sub}@example.com"),
            "iat": now(), "exp": now() + 3600,
        });
        if let (Value::Object(claims), Value::Object(extra)) = (&mut claims, extra) {
            claims.extend(extra.clone());
        }
        self.users.sign(&claims)
    }

    /// A workload's token (actor).
    fn workload(&self, sub: &str, team: &str) -> String {
        self.workloads.sign(&json!({
            "iss": WORKLOADS_ISS, "aud": AUD, "sub": sub, "team": team,
            "iat": now(), "exp": now() + 1800,
        }))
    }

    async fn post(&self, pairs: &[(&str, &str)]) -> Answer {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let answer = Answer::read(
            self.http
                .post(self.url("/tokens"))
                .header("content-type", FORM)
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            answer.header("cache-control"),
            Some("no-store"),
            "{answer:?}"
        );
        answer
    }

    /// `subject` for `audience`, with `actor` (a JWT) when given.
    async fn delegate(&self, subject: &str, actor: Option<&str>, audience: &str) -> Answer {
        let mut pairs = vec![
            ("grant_type", GRANT),
            ("subject_token", subject),
            ("subject_token_type", JWT_TYPE),
            ("audience", audience),
        ];
        if let Some(actor) = actor {
            pairs.push(("actor_token", actor));
            pairs.push(("actor_token_type", JWT_TYPE));
        }
        self.post(&pairs).await
    }

    /// The minted token of a 200 answer.
    fn minted(answer: &Answer) -> String {
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.json()["access_token"].as_str().unwrap().to_owned()
    }

    /// The published JWK of `sbk_es`.
    async fn jwk(&self) -> Value {
        let answer = Answer::read(
            self.http
                .get(self.url("/.well-known/jwks.json"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        answer.json()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == "sbk_es")
            .expect("signing key published")
            .clone()
    }

    /// PyJWT verifies `token` (ES256, baton's issuer, `audience`) with the published key;
    /// returns the payload it verified.
    async fn pyjwt_payload(&self, token: &str, audience: &str) -> Value {
        let job = json!({
            "token": token, "key_kind": "jwk", "jwk": self.jwk().await,
            "algorithms": ["ES256"], "audience": audience, "issuer": BATON_ISS,
        });
        let (code, stdout, stderr) = python("verify_pyjwt.py", &job);
        assert_eq!(code, 0, "PyJWT refused a token baton minted: {stderr}");
        let verified: Value = serde_json::from_str(&stdout).unwrap();
        verified["payload"].clone()
    }
}

/// Runs `tests/interop/{script}` on `job`: (exit code, stdout, stderr). Exit 3 (a library
/// missing) and 2 (a malformed job) fail the test: they are never a result.
fn python(script: &str, job: &Value) -> (i32, String, String) {
    let path = format!("{}/tests/interop/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("python3")
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); run scripts/test.sh"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let code = output.status.code().unwrap_or(-1);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        code == 0 || code == 1,
        "{script} failed (exit {code}), not a result (scripts/test.sh installs what it needs):\n{stderr}"
    );
    (code, stdout, stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_token_and_a_workload_token_give_act_verified_by_pyjwt() {
    let fx = Fixture::start().await;
    let subject = fx.user("alice", &json!({}));
    let actor = fx.workload("svc-billing", "payments");
    let answer = fx.delegate(&subject, Some(&actor), "api").await;
    let token = Fixture::minted(&answer);
    assert_eq!(answer.json()["issued_token_type"], ACCESS_TOKEN_TYPE);

    let claims = fx.pyjwt_payload(&token, "api").await;
    assert_eq!(claims["sub"], "alice", "{claims}");
    assert_eq!(claims["email"], "alice@example.com", "{claims}");
    assert_eq!(
        claims["act"],
        json!({ "sub": "svc-billing", "iss": WORKLOADS_ISS }),
        "{claims}"
    );
    // The provider mapping read the actor's intermediate claims under `$.actor`.
    assert_eq!(claims["actor_team"], "payments", "{claims}");
    // The token lives no longer than the actor token (30 min).
    let exp = claims["exp"].as_u64().unwrap();
    assert!(exp <= now() + 1800, "{claims}");

    // The same exchange without an actor still works, with no `act`.
    let plain = Fixture::minted(&fx.delegate(&subject, None, "api").await);
    let plain_claims = fx.pyjwt_payload(&plain, "api").await;
    assert_eq!(plain_claims["sub"], "alice");
    assert!(plain_claims.get("act").is_none(), "{plain_claims}");
    assert!(plain_claims.get("actor_team").is_none(), "{plain_claims}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_of_two_exchanges_nests_act() {
    let fx = Fixture::start().await;
    let subject = fx.user("alice", &json!({}));
    let first_actor = fx.workload("svc-frontend", "web");
    let first = Fixture::minted(&fx.delegate(&subject, Some(&first_actor), "api").await);

    // The frontend's token for alice is the subject of the next link; the billing service
    // acts on it.
    let second_actor = fx.workload("svc-billing", "payments");
    let second = Fixture::minted(&fx.delegate(&first, Some(&second_actor), "api").await);
    let claims = fx.pyjwt_payload(&second, "api").await;
    assert_eq!(claims["sub"], "alice", "{claims}");
    assert_eq!(
        claims["act"],
        json!({
            "sub": "svc-billing", "iss": WORKLOADS_ISS,
            "act": { "sub": "svc-frontend", "iss": WORKLOADS_ISS },
        }),
        "{claims}"
    );

    // A baton token as the actor: its payload is the actor's claims, baton its issuer.
    let third = Fixture::minted(&fx.delegate(&subject, Some(&first), "api").await);
    let claims = fx.pyjwt_payload(&third, "api").await;
    assert_eq!(
        claims["act"],
        json!({ "sub": "alice", "iss": BATON_ISS }),
        "{claims}"
    );

    // Without an actor, a baton token is no subject token (as before delegation).
    let answer = fx.delegate(&first, None, "api").await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(answer.json()["error"], "invalid_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn may_act_allows_the_named_actor_and_refuses_others() {
    let fx = Fixture::start().await;
    let subject = fx.user(
        "bob",
        &json!({ "may_act": { "sub": "svc-billing", "iss": WORKLOADS_ISS } }),
    );
    let named = fx.workload("svc-billing", "payments");
    let answer = fx.delegate(&subject, Some(&named), "api").await;
    let claims = payload(&Fixture::minted(&answer));
    assert_eq!(claims["act"]["sub"], "svc-billing", "{claims}");

    let other = fx.workload("svc-reports", "payments");
    let answer = fx.delegate(&subject, Some(&other), "api").await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(answer.json()["error"], "invalid_request");
    assert!(
        answer.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("may_act"),
        "{answer:?}"
    );

    // `iss` in may_act must match too.
    let wrong_issuer = fx.user(
        "bob",
        &json!({ "may_act": { "sub": "svc-billing", "iss": "https://elsewhere.test" } }),
    );
    let answer = fx.delegate(&wrong_issuer, Some(&named), "api").await;
    assert_eq!(answer.status, 400, "{answer:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn delegation_false_refuses_and_actor_conditions_apply() {
    let fx = Fixture::start().await;
    let subject = fx.user("carol", &json!({}));
    let billing = fx.workload("svc-billing", "payments");

    let answer = fx.delegate(&subject, Some(&billing), "plain").await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(answer.json()["error"], "invalid_request");
    let description = answer.json()["error_description"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(description.contains("not enabled"), "{description}");

    // `[[token_providers]] condition` on `actor.sub`.
    let answer = fx.delegate(&subject, Some(&billing), "api-guarded").await;
    Fixture::minted(&answer);
    let reports = fx.workload("svc-reports", "payments");
    let answer = fx.delegate(&subject, Some(&reports), "api-guarded").await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(answer.json()["error"], "invalid_target");
    let answer = fx.delegate(&subject, None, "api-guarded").await;
    assert_eq!(answer.json()["error"], "invalid_target", "{answer:?}");

    // The actor's IdP condition applies to the actor token.
    let banned = fx.workload("svc-billing", "banned");
    let answer = fx.delegate(&subject, Some(&banned), "api").await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(answer.json()["error"], "invalid_request");

    // An actor token no IdP vouches for.
    let stranger = TestKey::generate(Algorithm::RS256, "workloads-1").sign(&json!({
        "iss": WORKLOADS_ISS, "aud": AUD, "sub": "svc-billing", "exp": now() + 600,
    }));
    let answer = fx.delegate(&subject, Some(&stranger), "api").await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(
        answer.json()["error_description"]
            .as_str()
            .unwrap()
            .starts_with("actor_token"),
        "{answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_subject_with_two_actors_gets_two_tokens_each_cached() {
    let fx = Fixture::start().await;
    let subject = fx.user("dave", &json!({}));
    let billing = fx.workload("svc-billing", "payments");
    let reports = fx.workload("svc-reports", "analytics");
    let with_billing = Fixture::minted(&fx.delegate(&subject, Some(&billing), "api").await);
    let with_reports = Fixture::minted(&fx.delegate(&subject, Some(&reports), "api").await);
    let alone = Fixture::minted(&fx.delegate(&subject, None, "api").await);
    assert_ne!(with_billing, with_reports);
    assert_ne!(with_billing, alone);
    assert_eq!(payload(&with_billing)["act"]["sub"], "svc-billing");
    assert_eq!(payload(&with_reports)["act"]["sub"], "svc-reports");
    // Each is served from the cache on a repeat.
    let again = Fixture::minted(&fx.delegate(&subject, Some(&billing), "api").await);
    assert_eq!(again, with_billing);
    let again = Fixture::minted(&fx.delegate(&subject, Some(&reports), "api").await);
    assert_eq!(again, with_reports);
}

#[tokio::test(flavor = "multi_thread")]
async fn statebacked_providers_map_the_actor_and_jwt_is_for_access_tokens_only() {
    let fx = Fixture::start().await;
    let subject = fx.user("erin", &json!({}));
    let actor = fx.workload("svc-billing", "payments");
    let token = Fixture::minted(&fx.delegate(&subject, Some(&actor), "sb").await);
    let claims = fx
        .pyjwt_payload(&token, "https://api.statebacked.dev/")
        .await;
    // State Backed's `act` is the auth context: the mapping put the actor's claims there.
    assert_eq!(
        claims["act"],
        json!({ "user": "erin", "actor": { "sub": "svc-billing", "team": "payments" } }),
        "{claims}"
    );

    // requested_token_type = jwt: issued for an access_token provider, named in the answer.
    let pairs = [
        ("grant_type", GRANT),
        ("subject_token", subject.as_str()),
        ("audience", "api"),
        ("requested_token_type", JWT_TYPE),
    ];
    let answer = fx.post(&pairs).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["issued_token_type"], JWT_TYPE);
    let mut pairs = pairs;
    pairs[2] = ("audience", "sb");
    let answer = fx.post(&pairs).await;
    assert_eq!(answer.status, 400, "{answer:?}");
    let description = answer.json()["error_description"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(description.contains(ACCESS_TOKEN_TYPE), "{description}");
}

#[tokio::test(flavor = "multi_thread")]
async fn google_auth_sts_client_sends_an_actor_token() {
    let fx = Fixture::start().await;
    let subject = fx.user("frank", &json!({}));
    let actor = fx.workload("svc-billing", "payments");
    let job = json!({
        "endpoint": fx.url("/tokens"),
        "subject_token": subject, "subject_token_type": JWT_TYPE,
        "actor_token": actor, "actor_token_type": JWT_TYPE,
        "audience": "api", "requested_token_type": ACCESS_TOKEN_TYPE,
    });
    let (code, stdout, stderr) = python("sts_google_auth.py", &job);
    assert_eq!(code, 0, "google-auth's exchange was refused: {stderr}");
    let answer: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["issued_token_type"], ACCESS_TOKEN_TYPE, "{answer}");
    let token = answer["access_token"].as_str().unwrap();
    let claims = fx.pyjwt_payload(token, "api").await;
    assert_eq!(claims["sub"], "frank");
    assert_eq!(
        claims["act"],
        json!({ "sub": "svc-billing", "iss": WORKLOADS_ISS })
    );

    // And a refusal comes back to it as an OAuth error.
    let job = json!({
        "endpoint": fx.url("/tokens"),
        "subject_token": subject, "subject_token_type": JWT_TYPE,
        "actor_token": actor, "actor_token_type": JWT_TYPE,
        "audience": "plain",
    });
    let (code, _, stderr) = python("sts_google_auth.py", &job);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("invalid_request"), "{stderr}");
}
