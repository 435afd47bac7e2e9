//! baton alone, no front proxy: the original-request headers mean something only on the
//! forward-auth listener, that listener never forwards, and the Envoy example's
//! `request-line` answers (Envoy itself is not installable here).

use super::*;

/// baton on example config `name` with a proxy listener too (`[proxy] listen` and
/// `upstream`, the recording app), both listeners' addresses.
struct TwoListeners {
    baton: Baton,
    proxy: SocketAddr,
    forward_auth: SocketAddr,
    app: Upstream,
    idp: Idp,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl TwoListeners {
    async fn start(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let idp = Idp::start().await;
        let app = Upstream::start().await;
        let ports = Ports::reserve();
        let proxy = reserve_addr();
        let extra = format!("listen = \"{proxy}\"\nupstream = \"{}\"\n", app.addr);
        let config = baton_config(name, &ports, &idp, &extra);
        let baton = start_baton(dir.path(), proxy, &config, ports.admin).await;
        Self {
            baton,
            proxy,
            forward_auth: ports.forward_auth,
            app,
            idp,
            http: client(),
            _dir: dir,
        }
    }

    async fn get(&self, addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.http.get(format!("http://{addr}{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Answer::read(request.send().await.unwrap_or_else(|e| {
            panic!("GET {path} on {addr}: {e}\n{}", self.baton.log());
        }))
        .await
    }
}

/// On the proxy listener, `X-Forwarded-Uri`/`X-Original-URI` (and their methods) claiming a
/// skip route change nothing: `/api` without a token is a 401 and never reaches the app,
/// while `/health` itself passes. Checked with both header conventions configured.
#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_listener_never_reads_original_request_headers() {
    for name in ["baton-nginx.toml", "baton-caddy.toml"] {
        let b = TwoListeners::start(name).await;
        for spoofed in [
            [
                ("x-forwarded-uri", "/health"),
                ("x-forwarded-method", "GET"),
            ],
            [("x-original-uri", "/health"), ("x-original-method", "GET")],
        ] {
            let answer = b.get(b.proxy, "/api/items", &spoofed).await;
            assert_eq!(answer.status, 401, "{name} {spoofed:?}: {answer:?}");
            assert_eq!(
                answer.header("www-authenticate"),
                Some("Bearer realm=\"baton\""),
                "{name}"
            );
        }
        assert_eq!(
            b.app.received(),
            0,
            "{name}: a refused request reached the app"
        );
        let answer = b.get(b.proxy, "/health", &[]).await;
        assert_eq!(answer.status, 200, "{name}: {answer:?}");
        assert_eq!(b.app.last().target, "/health", "{name}");
        assert_eq!(b.app.received(), 1, "{name}");
    }
}

/// The forward-auth listener answers and never forwards, though `[proxy] upstream` is the
/// recording app: an allowed check (200 with baton's token), a skip route, an absolute-form
/// check target naming the app (`GET http://<app>/x`), an absolute original URI naming it,
/// and a `CONNECT` to it: the app never gets a connection.
#[tokio::test(flavor = "multi_thread")]
async fn the_forward_auth_listener_never_forwards() {
    let b = TwoListeners::start("baton-nginx.toml").await;
    let token = b.idp.token("ivy", Some("ivy@example.com"));
    let bearer = format!("Bearer {token}");
    let original = |uri: &'static str| {
        [
            ("x-original-uri", uri),
            ("x-original-method", "GET"),
            ("authorization", bearer.as_str()),
        ]
    };
    let answer = b.get(b.forward_auth, "/x", &original("/api/items")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.body.is_empty(), "{answer:?}");
    let claims = baton_token_claims(answer.header("authorization"), "the check's answer");
    assert_eq!(claims["sub"], "ivy");
    assert_eq!(answer.header("x-user"), Some("ivy@example.com"));
    let answer = b.get(b.forward_auth, "/x", &original("/health")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("authorization"), None, "{answer:?}");

    let app = b.app.addr;
    let heads = [
        format!(
            "GET http://{app}/x HTTP/1.1\r\nHost: {app}\r\nX-Original-URI: /api/items\r\n\
             X-Original-Method: GET\r\nAuthorization: {bearer}\r\n"
        ),
        format!(
            "GET /x HTTP/1.1\r\nHost: {app}\r\nX-Original-URI: http://{app}/api/items\r\n\
             X-Original-Method: GET\r\nAuthorization: {bearer}\r\n"
        ),
        format!("CONNECT {app} HTTP/1.1\r\nHost: {app}\r\nAuthorization: {bearer}\r\n"),
    ];
    for head in &heads {
        // Whatever baton answers (a refusal, a decision), the app is never asked.
        let (status, _, body) = raw_request(b.forward_auth, head).await;
        let first_line = head.lines().next().unwrap();
        eprintln!("{first_line}: {status} {body}");
    }
    assert_eq!(b.app.received(), 0, "the app received a check");
    assert_eq!(
        b.app.connections.load(Ordering::SeqCst),
        0,
        "baton connected to the app"
    );
}

/// Envoy's convention (`baton-envoy.toml`, `request-line` with `path_prefix = "/authz"`),
/// alone and with a proxy listener beside (which takes `/tokens` off this listener): the
/// check request is the original behind the prefix; the 200 carries baton's token and
/// X-User and names in `x-envoy-auth-headers-to-remove` what the app must not get (`x-user`
/// when the token has no email, `authorization` on a skip route); a POST on the GET-only
/// route is a 403; a check outside the prefix, or with an absolute-form target, is a 400;
/// the prefix comes off the raw path before the rest is normalized, so an original path
/// whose dot-segments climb out of the prefix and back in (`/authz/../authz/health`, which
/// the app resolves to `/authz/health`) is not judged as the skip route `/health`.
#[tokio::test(flavor = "multi_thread")]
async fn the_envoy_example_s_request_line_answers() {
    for with_proxy_listener in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let idp = Idp::start().await;
        let app = Upstream::start().await;
        let ports = Ports::reserve();
        let extra = if with_proxy_listener {
            format!(
                "listen = \"{}\"\nupstream = \"{}\"\n",
                reserve_addr(),
                app.addr
            )
        } else {
            String::new()
        };
        let config = baton_config("baton-envoy.toml", &ports, &idp, &extra);
        let baton = start_baton(dir.path(), ports.forward_auth, &config, ports.admin).await;
        let case = if with_proxy_listener {
            "with a proxy listener"
        } else {
            "alone"
        };
        let http = client();
        let check = |method: &str, path: &str, token: Option<&str>| {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let mut request = http.request(method, format!("http://{}{path}", ports.forward_auth));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            async move { Answer::read(request.send().await.unwrap()).await }
        };
        let removed = |answer: &Answer| -> Vec<String> {
            answer
                .header("x-envoy-auth-headers-to-remove")
                .unwrap_or_default()
                .split(',')
                .map(|name| name.trim().to_ascii_lowercase())
                .filter(|name| !name.is_empty())
                .collect()
        };

        let jane = idp.token("jane", Some("jane@example.com"));
        let answer = check("GET", "/authz/api/items?page=1", Some(&jane)).await;
        assert_eq!(answer.status, 200, "{case}: {answer:?}\n{}", baton.log());
        let claims = baton_token_claims(answer.header("authorization"), "jane");
        assert_eq!(claims["sub"], "jane");
        assert_eq!(answer.header("x-user"), Some("jane@example.com"));
        assert!(removed(&answer).is_empty(), "{case}: {answer:?}");

        let kim = idp.token("kim", None);
        let answer = check("GET", "/authz/api/items", Some(&kim)).await;
        assert_eq!(answer.status, 200, "{case}: {answer:?}");
        baton_token_claims(answer.header("authorization"), "kim");
        assert_eq!(answer.header("x-user"), None);
        assert_eq!(removed(&answer), ["x-user"], "{case}: {answer:?}");

        let answer = check("GET", "/authz/health", Some(&kim)).await;
        assert_eq!(answer.status, 200, "{case}: {answer:?}");
        assert_eq!(answer.header("authorization"), None);
        let names = removed(&answer);
        assert!(
            names.contains(&"authorization".to_owned()) && names.contains(&"x-user".to_owned()),
            "{case}: {answer:?}"
        );

        let answer = check("POST", "/authz/api/read/x", Some(&kim)).await;
        assert_eq!(answer.status, 403, "{case}: {answer:?}");
        let answer = check("GET", "/api/items", Some(&kim)).await;
        assert_eq!(
            answer.status, 400,
            "{case}: outside the path prefix: {answer:?}"
        );
        let answer = check("GET", "/authz/api/items", None).await;
        assert_eq!(answer.status, 401, "{case}: {answer:?}");

        let host = format!("Host: {}\r\n", ports.forward_auth);
        for (head, want) in [
            (
                format!("GET /authz/../authz/health HTTP/1.1\r\n{host}"),
                401,
            ),
            (format!("GET /x/../authz/health HTTP/1.1\r\n{host}"), 400),
            (
                format!("GET http://evil.example/authz/health HTTP/1.1\r\n{host}"),
                400,
            ),
        ] {
            let (status, _, body) = raw_request(ports.forward_auth, &head).await;
            let first_line = head.lines().next().unwrap();
            assert_eq!(status, want, "{case}: {first_line}: {body}");
        }
        assert_eq!(app.received(), 0, "{case}: the app received a check");
    }
}

/// Every example baton config passes `baton check`.
#[test]
fn every_example_baton_config_passes_baton_check() {
    for name in [
        "baton-nginx.toml",
        "baton-caddy.toml",
        "baton-traefik.toml",
        "baton-envoy.toml",
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["check", "--config"])
            .arg(example_path(name))
            .env(KEY_ENV, KEY_SECRET)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
