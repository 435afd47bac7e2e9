//! `baton demo`: a complete local setup with no external service.
//!
//! It starts, all on 127.0.0.1:
//! - a demo IdP with its own RS256 key, JWKS, OIDC discovery, and `GET /token?user=NAME`
//!   that issues a token for any user name; at `/` it serves the demo's page (the files of
//!   `src/demo/`, embedded in the binary), which walks the whole story in a browser: sign in,
//!   exchange the token at baton's `POST /tokens`, call the app through the proxy, and see
//!   `baton explain`'s verdict on a broken token (`POST /explain` on the IdP's origin);
//! - an echo upstream that answers with what it received (method, path, headers, and the
//!   claims of the token baton put in `Authorization`);
//! - baton, configured to trust the IdP through discovery and to mint ES256 tokens in State
//!   Backed's format for the service `demo-app`, with its admin listener (health, metrics and
//!   the admin API, its token and master key in files of the demo's temp directory);
//!
//! then prints the page's address and the commands to try.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::AdminState;
use crate::clock::{Clock as _, SystemClock};
use crate::control::{Control, Loaded};
use crate::exchange::{Exchanger, ExchangerOptions};
use crate::keygen;
use crate::mint::keys::SigningKey;
use crate::server::App;

/// The service the demo's token provider serves.
pub const DEMO_SERVICE: &str = "demo-app";
/// The audience of the demo IdP's tokens.
pub const DEMO_AUDIENCE: &str = "demo-app";

/// The demo's page, with `{{BATON_URL}}` and `{{SERVICE}}` to fill in; its script and style.
const PAGE_HTML: &str = include_str!("demo/index.html");
const PAGE_JS: &str = include_str!("demo/demo.js");
const PAGE_CSS: &str = include_str!("demo/demo.css");

/// The largest token `POST /explain` takes: `POST /tokens`' bound on `subject_token`.
const MAX_EXPLAIN_BYTES: usize = 16 * 1024;

/// Where the demo listens: baton on `port`, the IdP on `port + 1`, the echo upstream on
/// `port + 2`, baton's admin listener on `port + 3`; with `port` 0, all on ephemeral ports.
#[derive(Debug, Clone, Copy)]
pub struct DemoOptions {
    /// baton's port.
    pub port: u16,
}

/// The demo could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DemoError(String);

/// Runs the demo until Ctrl-C.
pub async fn run(options: DemoOptions) -> Result<(), DemoError> {
    let bind = |offset: u16| async move {
        let port = if options.port == 0 {
            0
        } else {
            options.port + offset
        };
        TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| {
            DemoError(format!(
                "cannot listen on 127.0.0.1:{port}: {e} (choose other ports with `baton demo --port N`)"
            ))
        })
    };
    let baton_listener = bind(0).await?;
    let idp_listener = bind(1).await?;
    let echo_listener = bind(2).await?;
    let admin_listener = bind(3).await?;
    let addr = |l: &TcpListener| l.local_addr().map_err(|e| DemoError(e.to_string()));
    let (baton_addr, idp_addr, echo_addr, admin_addr) = (
        addr(&baton_listener)?,
        addr(&idp_listener)?,
        addr(&echo_listener)?,
        addr(&admin_listener)?,
    );

    let idp_key =
        keygen::generate(jsonwebtoken::Algorithm::RS256).map_err(|e| DemoError(e.to_string()))?;
    let idp_key = Arc::new(
        SigningKey::from_private_pem(
            "demo-idp-key",
            jsonwebtoken::Algorithm::RS256,
            idp_key.material.expose(),
        )
        .map_err(|e| DemoError(e.to_string()))?,
    );
    let issuer = format!("http://{idp_addr}");
    tokio::spawn(serve_http(echo_listener, |req| async move { echo(req) }));

    let dir = std::env::temp_dir().join(format!("baton-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| DemoError(format!("cannot create {}: {e}", dir.display())))?;
    let baton_key =
        keygen::generate(jsonwebtoken::Algorithm::ES256).map_err(|e| DemoError(e.to_string()))?;
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.join(name), bytes)
            .map_err(|e| DemoError(format!("cannot write the demo's {name}: {e}")))
    };
    write("demo-es256.pem", baton_key.material.expose())?;
    // The admin API's token and the state file's master key: random, in files only.
    write("admin-token", random_text(24)?.as_bytes())?;
    write("master-key", random_text(32)?.as_bytes())?;
    let config_path = dir.join("baton.toml");
    write(
        "baton.toml",
        demo_config(&issuer, baton_addr, echo_addr, admin_addr).as_bytes(),
    )?;
    let Loaded {
        config, sources, ..
    } = Control::load(&config_path).map_err(DemoError)?;
    let app =
        App::new(config, ExchangerOptions::default()).map_err(|e| DemoError(e.to_string()))?;
    // The IdP starts answering now that its page can explain with baton's exchanger (its
    // listener has been queueing connections since it was bound).
    let site = Arc::new(DemoIdp {
        key: idp_key,
        page: PAGE_HTML
            .replace("{{BATON_URL}}", &format!("http://{baton_addr}"))
            .replace("{{SERVICE}}", DEMO_SERVICE),
        issuer,
        exchanger: Arc::clone(app.gateway().exchanger()),
    });
    tokio::spawn(serve_http(idp_listener, move |req| {
        idp(req, Arc::clone(&site))
    }));
    let control = Arc::new(Control::new(
        Arc::clone(app.gateway()),
        config_path,
        sources,
        None,
    ));
    tokio::spawn(crate::admin::serve(
        admin_listener,
        Arc::new(AdminState::new(control)),
    ));

    println!(
        "{}",
        instructions(baton_addr, idp_addr, echo_addr, admin_addr, &dir)
    );
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = shutdown_tx.send(true);
    });
    app.serve(baton_listener, shutdown_rx).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `bytes` random bytes, base64url.
fn random_text(bytes: usize) -> Result<String, DemoError> {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut buffer = vec![0u8; bytes];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut buffer)
        .map_err(|_| DemoError("the system random source failed".to_owned()))?;
    Ok(URL_SAFE_NO_PAD.encode(buffer))
}

/// The demo's config: this is what a real one looks like (see `config/`).
fn demo_config(issuer: &str, baton: SocketAddr, echo: SocketAddr, admin: SocketAddr) -> String {
    format!(
        r#"
[server]
org = "org_demo"
issuer = "http://{baton}"
# The demo's page (served by the IdP) exchanges tokens from the browser.
cors_origins = ["{issuer}"]

[proxy]
listen = "{baton}"
upstream = "{echo}"
service = "{DEMO_SERVICE}"
# ... and calls the app through baton with its IdP token.
cors_origins = ["{issuer}"]

[admin]
listen = "{admin}"
token_file = "admin-token"
state_file = "state.json"
master_key_file = "master-key"

[[keys]]
id = "sbk_demo"
algorithm = "ES256"
private_key_file = "demo-es256.pem"

[[idps]]
name = "demo-idp"
issuer = "{issuer}"
audience = "{DEMO_AUDIENCE}"
algorithms = ["RS256"]
discovery = true
mapping = {{ "sub.$" = "$.sub", "email.$" = "$.email", "roles.$" = "$.roles", provider = "demo-idp" }}

[[token_providers]]
service = "{DEMO_SERVICE}"
key = "sbk_demo"
ttl = "15m"
mapping = {{ "sub.$" = "$.sub", "email.$" = "$.email", "roles.$" = "$.roles", "provider.$" = "$.provider" }}
"#
    )
}

fn instructions(
    baton: SocketAddr,
    idp: SocketAddr,
    echo: SocketAddr,
    admin: SocketAddr,
    dir: &std::path::Path,
) -> String {
    let token_file = dir.join("admin-token");
    let token_file = token_file.display();
    format!(
        "baton demo is running (Ctrl-C to stop):
  demo IdP       http://{idp}   issues RS256 tokens for any user name; the demo's page at /
  baton          http://{baton}   proxy, POST /tokens, /.well-known/jwks.json
  echo upstream  http://{echo}   the app: answers with what it received
  baton admin    http://{admin}   /healthz, /readyz, /metrics, admin API (/idps, /token-providers, /keys)

Try:
  Open http://{idp}/ in a browser: sign in, exchange, call the app, explain a broken token
  TOKEN=$(curl -s 'http://{idp}/token?user=alice')
  curl -s -H \"Authorization: Bearer $TOKEN\" http://{baton}/hello
  curl -s http://{baton}/tokens -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange -d audience={DEMO_SERVICE} --data-urlencode \"subject_token=$TOKEN\"
  curl -s -i http://{baton}/hello
  curl -s http://{baton}/.well-known/jwks.json
  curl -s -H \"Authorization: Bearer $(cat {token_file})\" http://{admin}/token-providers
  curl -s http://{admin}/metrics | grep '^baton_exchanges_total'
"
    )
}

async fn serve_http<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn reply(status: u16, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert("content-type", value);
    }
    response
}

/// The demo IdP: its key and issuer, its page, and baton's exchanger for the page's
/// `POST /explain`.
struct DemoIdp {
    key: Arc<SigningKey>,
    issuer: String,
    /// `index.html` with baton's address filled in.
    page: String,
    exchanger: Arc<Exchanger>,
}

/// The demo IdP's answers: discovery, JWKS, tokens, and the demo's page.
async fn idp(req: Request<Incoming>, site: Arc<DemoIdp>) -> Response<Full<Bytes>> {
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/" | "/index.html") => reply(200, "text/html; charset=utf-8", site.page.clone()),
        ("GET", "/demo.js") => reply(200, "text/javascript; charset=utf-8", PAGE_JS.to_owned()),
        ("GET", "/demo.css") => reply(200, "text/css; charset=utf-8", PAGE_CSS.to_owned()),
        ("POST", "/explain") => explain(req, &site.exchanger).await,
        (_, "/.well-known/openid-configuration") => reply(
            200,
            "application/json",
            json!({ "issuer": site.issuer, "jwks_uri": format!("{}/jwks.json", site.issuer) })
                .to_string(),
        ),
        (_, "/jwks.json") => reply(
            200,
            "application/json",
            json!({ "keys": [site.key.public_jwk()] }).to_string(),
        ),
        (_, "/token") => {
            let user = req
                .uri()
                .query()
                .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "user"))
                .map_or_else(|| "demo-user".to_owned(), |(_, v)| v.into_owned());
            issue_token(&site, &user)
        }
        _ => reply(404, "text/plain", "not found".to_owned()),
    }
}

/// A token of the demo IdP for `user`: `sub` `user|NAME`, an hour long.
fn issue_token(site: &DemoIdp, user: &str) -> Response<Full<Bytes>> {
    let now = SystemClock.now_unix();
    let claims = json!({
        "iss": site.issuer, "aud": DEMO_AUDIENCE, "sub": format!("user|{user}"),
        "email": format!("{user}@example.com"), "roles": ["reader"],
        "iat": now, "exp": now + 3600,
    });
    let header = json!({ "alg": "RS256", "kid": site.key.id(), "typ": "JWT" });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    match site.key.sign(input.as_bytes()) {
        Ok(signature) => reply(200, "text/plain", format!("{input}.{signature}")),
        Err(e) => reply(500, "text/plain", e.to_string()),
    }
}

/// `POST /explain` (the page's step 4): the body is a token; the answer is what `baton
/// explain` would print for it with the demo's config (never the token itself).
async fn explain(req: Request<Incoming>, exchanger: &Exchanger) -> Response<Full<Bytes>> {
    let body = match Limited::new(req.into_body(), MAX_EXPLAIN_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return reply(
                413,
                "text/plain",
                format!("a token of at most {MAX_EXPLAIN_BYTES} bytes"),
            );
        }
    };
    let token = String::from_utf8_lossy(&body);
    let (result, trace) = exchanger.explain(token.trim(), DEMO_SERVICE, None).await;
    let report = crate::report::report(&exchanger.config(), DEMO_SERVICE, None, &result, &trace);
    reply(200, "text/plain; charset=utf-8", report)
}

/// The echo upstream: what a real app would receive from baton.
fn echo(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    // Decoded without verification, for display: the app itself would verify it with
    // baton's key (`/.well-known/jwks.json`).
    let token_claims = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| token.split('.').nth(1))
        .and_then(|payload| URL_SAFE_NO_PAD.decode(payload).ok())
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
    let body = json!({
        "received": {
            "method": req.method().as_str(),
            "path": req.uri().path(),
            "headers": headers,
        },
        "baton_token_claims": token_claims,
    });
    reply(200, "application/json", format!("{body:#}\n"))
}
