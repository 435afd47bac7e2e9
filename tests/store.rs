//! `[store]`: several real `baton serve` processes on one real PostgreSQL (a throwaway
//! server each test starts, `support::postgres`). A write through one baton is served by
//! every baton within a second; conflicting writes end valid; the database restarted, a
//! replica cut off, a writer killed mid-write, a row edited behind baton's back, SQL
//! metacharacters in every field: each leaves a state one baton would have accepted.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use parking_lot::Mutex;
use serde_json::{Value, json};
use support::baton::{Baton, reserve_port};
use support::postgres::Postgres;
use support::{now, sign_hmac};

const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";
/// 32 bytes, base64.
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const OTHER_MASTER_KEY: &str = "HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4=";
const FILE_IDP_SECRET: &str = "file-idp-secret";
/// The advisory lock baton's writes take (`src/store.rs`).
const STORE_LOCK: i64 = 0x6261_746f_6e00_0001;
/// How soon a write through one baton must be served by every other.
const CONVERGENCE: Duration = Duration::from_secs(1);
/// How long the tests that do not measure convergence wait for it (a loaded machine).
const SETTLE: Duration = Duration::from_secs(5);

/// The convergence test runs alone (the others hold this shared): ten tests' batons and
/// databases at once on a small machine would measure the machine's load, not baton.
static ALONE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// One baton of the fleet, with its own directory (config, log, snapshot file).
struct Node {
    baton: Baton,
    admin_url: String,
    dir: tempfile::TempDir,
}

fn config(admin_port: u16, proxy_port: u16, store: &str) -> String {
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
token_env = "ADMIN_TOKEN"
master_key_env = "MASTER_KEY"

[store]
{store}

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

const STORE: &str = r#"url_env = "BATON_STORE_URL"
snapshot_file = "snapshot.json"
migrate = true"#;

/// The config and environment of a node, for a start the test runs itself.
fn node_files(dir: &Path, store: &str) -> (u16, u16, String) {
    let (admin_port, proxy_port) = (reserve_port(), reserve_port());
    let text = config(admin_port, proxy_port, store);
    std::fs::write(dir.join("baton.toml"), &text).unwrap();
    (admin_port, proxy_port, text)
}

/// Runs the baton binary with `args` and `--config {dir}/baton.toml`, the admin token, and
/// `env` (the master key and store URL the case needs), to its end.
fn run_baton(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(args)
        .arg("--config")
        .arg(dir.join("baton.toml"))
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

impl Node {
    async fn start(url: &str) -> Self {
        Self::start_with(url, STORE, MASTER_KEY).await
    }

    async fn start_with(url: &str, store: &str, master_key: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, url, store, master_key).await
    }

    async fn start_in(dir: tempfile::TempDir, url: &str, store: &str, master_key: &str) -> Self {
        let (admin_port, proxy_port, text) = node_files(dir.path(), store);
        let baton = Baton::launch(dir.path(), ([127, 0, 0, 1], proxy_port).into(), &text)
            .envs(&[
                ("ADMIN_TOKEN", ADMIN_TOKEN),
                ("MASTER_KEY", master_key),
                ("BATON_STORE_URL", url),
            ])
            .start()
            .await;
        Self {
            baton,
            admin_url: format!("http://127.0.0.1:{admin_port}"),
            dir,
        }
    }

    /// An admin API call; the status and the JSON body (`Null` when empty).
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{}{path}", self.admin_url))
            .bearer_auth(ADMIN_TOKEN)
            .timeout(Duration::from_secs(30));
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

    /// `POST /tokens` for `service` with a token of the file's IdP; the status.
    async fn exchange(&self, service: &str) -> u16 {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair(
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            )
            .append_pair("subject_token", &file_token())
            .append_pair("audience", service)
            .finish();
        reqwest::Client::new()
            .post(self.baton.url("/tokens"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// `/readyz`: the status and the body.
    async fn readyz(&self) -> (u16, Value) {
        let response = reqwest::get(format!("{}/readyz", self.admin_url))
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// A metric's value from `/metrics` (the first sample named exactly `name`).
    async fn metric(&self, name: &str) -> Option<f64> {
        let text = reqwest::get(format!("{}/metrics", self.admin_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines().find_map(|line| {
            let (sample, value) = line.split_once(' ')?;
            (sample == name).then(|| value.parse().ok())?
        })
    }

    /// Waits up to `within` for `/readyz`'s store revision to be `revision`.
    async fn wait_revision(&self, revision: i64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let (_, ready) = self.readyz().await;
            if ready["store"]["revision"] == revision {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "still at {} (not {revision}) after {within:?}:\n{}",
                ready["store"],
                self.baton.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits up to `within` for `/readyz` to say the store is `connected`.
    async fn wait_connected(&self, connected: bool, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let (_, ready) = self.readyz().await;
            if ready["store"]["connected"] == connected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "store.connected is not {connected} after {within:?}: {ready}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn file_token() -> String {
    sign_hmac(
        FILE_IDP_SECRET.as_bytes(),
        Algorithm::HS256,
        &json!({ "alg": "HS256", "typ": "JWT" }),
        &json!({ "iss": "https://file.idp/", "sub": "user-1", "exp": now() + 600 }),
    )
}

/// A token provider for `service`, signing with `key`.
fn provider(service: &str, key: &str) -> Value {
    json!({ "service": service, "keyId": key, "mapping": { "sub.$": "$.sub" } })
}

/// Polls every node until `service` exchanges there (200); returns how long each took from
/// `since`. Panics past `within`.
async fn served_by_all(
    nodes: &[&Node],
    service: &str,
    since: Instant,
    within: Duration,
) -> Vec<Duration> {
    let mut times = Vec::new();
    for node in nodes {
        loop {
            if node.exchange(service).await == 200 {
                times.push(since.elapsed());
                break;
            }
            assert!(
                since.elapsed() < within,
                "{service} not served within {within:?}:\n{}",
                node.baton.log()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    times
}

async fn max_revision(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT coalesce(max(revision), 0) FROM baton_revisions",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_baton_is_served_by_every_baton_within_a_second() {
    let _alone = ALONE.write().await;
    let postgres = Postgres::start().await;
    let mut nodes = Vec::new();
    for _ in 0..4 {
        nodes.push(Node::start(&postgres.url()).await);
    }
    for node in &nodes {
        // The follower connects just after the listeners open.
        node.wait_connected(true, SETTLE).await;
        let (status, ready) = node.readyz().await;
        assert_eq!(status, 200, "{ready}");
        assert_eq!(ready["store"], json!({ "connected": true, "revision": 0 }));
    }

    // Through each node in turn; every other node serves it within a second.
    let mut slowest = Duration::ZERO;
    for (round, writer) in nodes.iter().enumerate() {
        let service = format!("app-{round}");
        for node in &nodes {
            assert_eq!(node.exchange(&service).await, 400, "not served before");
        }
        let (status, body) = writer
            .call(
                "POST",
                "/token-providers",
                Some(provider(&service, "sbk_file")),
            )
            .await;
        assert_eq!(status, 204, "{body}");
        let acknowledged = Instant::now();
        // The writer serves it before it answers.
        assert_eq!(writer.exchange(&service).await, 200);
        let others: Vec<&Node> = nodes.iter().filter(|n| !std::ptr::eq(*n, writer)).collect();
        let times = served_by_all(&others, &service, acknowledged, CONVERGENCE).await;
        eprintln!("round {round}: served by the others after {times:?}");
        slowest = slowest.max(times.into_iter().max().unwrap());
    }
    eprintln!("slowest convergence: {slowest:?}");
    for node in &nodes {
        node.wait_revision(4, CONVERGENCE).await;
        assert_eq!(node.metric("baton_store_revision").await, Some(4.0));
        assert_eq!(node.metric("baton_store_connected").await, Some(1.0));
    }

    // The document in the store holds no secret: a key made through the API is sealed.
    let (status, key) = nodes[0]
        .call("POST", "/keys", Some(json!({ "name": "k", "use": "ci" })))
        .await;
    assert_eq!(status, 200);
    let secret = key["key"].as_str().unwrap();
    let client = postgres.client().await;
    let dump: Vec<String> = client
        .query("SELECT document FROM baton_revisions", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(dump.iter().any(|d| d.contains(key["id"].as_str().unwrap())));
    assert!(dump.iter().all(|d| !d.contains(secret)));
    let snapshot = std::fs::read_to_string(nodes[1].dir.path().join("snapshot.json")).unwrap();
    assert!(!snapshot.contains(secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_writes_through_two_batons_at_once_end_in_a_valid_state() {
    let _shared = ALONE.read().await;
    let postgres = Postgres::start().await;
    let (a, b) = (
        Node::start(&postgres.url()).await,
        Node::start(&postgres.url()).await,
    );
    for round in 0..6 {
        // A key, then at once: a provider signing with it (through a), its deletion
        // (through b). One baton alone would refuse whichever comes second.
        let (status, key) = a
            .call("POST", "/keys", Some(json!({ "name": "k", "use": "ci" })))
            .await;
        assert_eq!(status, 200);
        let key_id = key["id"].as_str().unwrap().to_owned();
        let service = format!("contested-{round}");
        let path = format!("/keys/{key_id}");
        let (point, delete) = tokio::join!(
            a.call(
                "POST",
                "/token-providers",
                Some(provider(&service, &key_id))
            ),
            b.call("DELETE", &path, None),
        );
        eprintln!("round {round}: provider {}, delete {}", point.0, delete.0);
        match (point.0, delete.0) {
            // The provider first: the key signs for it, so it cannot go (409).
            (204, 409) => {
                assert!(
                    delete.1["error"].as_str().unwrap().contains(&service),
                    "{}",
                    delete.1
                );
            }
            // The deletion first: the provider names a key that is gone (400).
            (400, 204) => {
                assert!(
                    point.1["error"].as_str().unwrap().contains(&key_id),
                    "{}",
                    point.1
                );
            }
            other => panic!(
                "not one winner and one refusal: {other:?} {} {}",
                point.1, delete.1
            ),
        }
        // Both batons end on the same revision, where a provider's key exists.
        let revision = max_revision(&postgres.client().await).await;
        for node in [&a, &b] {
            node.wait_revision(revision, SETTLE).await;
            let (_, providers) = node.call("GET", "/token-providers", None).await;
            let (_, keys) = node.call("GET", "/keys", None).await;
            let has_provider = providers.to_string().contains(&service);
            let has_key = keys.to_string().contains(&key_id);
            assert_eq!(has_provider, point.0 == 204);
            assert_eq!(has_key, point.0 == 204);
            assert_eq!(node.exchange(&service).await == 200, has_provider);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_restarted_batons_keep_serving_and_catch_up_after() {
    let _shared = ALONE.read().await;
    let mut postgres = Postgres::start().await;
    let nodes = [
        Node::start(&postgres.url()).await,
        Node::start(&postgres.url()).await,
        Node::start(&postgres.url()).await,
    ];
    assert_eq!(
        nodes[0]
            .call(
                "POST",
                "/token-providers",
                Some(provider("before", "sbk_file"))
            )
            .await
            .0,
        204
    );
    for node in &nodes {
        node.wait_revision(1, SETTLE).await;
    }

    postgres.stop().await;
    for node in &nodes {
        node.wait_connected(false, Duration::from_secs(10)).await;
        // Fail static: the last revision serves, and baton stays ready.
        assert_eq!(node.exchange("before").await, 200);
        let (status, ready) = node.readyz().await;
        assert_eq!(status, 200, "{ready}");
        assert_eq!(ready["store"], json!({ "connected": false, "revision": 1 }));
        assert_eq!(node.metric("baton_store_connected").await, Some(0.0));
    }
    // Writes cannot be kept: 503, nothing changes.
    let (status, body) = nodes[1]
        .call(
            "POST",
            "/token-providers",
            Some(provider("during", "sbk_file")),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("store-unavailable")),
        "{body}"
    );
    assert_eq!(nodes[1].exchange("during").await, 400);

    postgres.resume().await;
    for node in &nodes {
        // Reconnect backoff is capped at 5 s.
        node.wait_connected(true, Duration::from_secs(10)).await;
        assert!(node.metric("baton_store_reconnects_total").await >= Some(1.0));
    }
    let (status, body) = nodes[1]
        .call(
            "POST",
            "/token-providers",
            Some(provider("after", "sbk_file")),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let times = served_by_all(&[&nodes[0], &nodes[2]], "after", Instant::now(), SETTLE).await;
    eprintln!("after the restart: served after {times:?}");
    for node in &nodes {
        assert_eq!(node.exchange("before").await, 200);
    }
}

/// A TCP forwarder in front of the database that the test can cut (every connection
/// dropped, new ones refused) and restore: one baton loses the store while the others keep it.
struct Cable {
    port: u16,
    open: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Cable {
    async fn to(port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cable = Self {
            port: listener.local_addr().unwrap().port(),
            open: Arc::new(AtomicBool::new(true)),
            links: Arc::default(),
        };
        let (open, links) = (Arc::clone(&cable.open), Arc::clone(&cable.links));
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !open.load(Ordering::SeqCst) {
                    continue;
                }
                links.lock().push(tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        cable
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for link in self.links.lock().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_baton_that_missed_notifications_while_cut_off_catches_up() {
    let _shared = ALONE.read().await;
    let postgres = Postgres::start().await;
    let cable = Cable::to(postgres.port).await;
    let writer = Node::start(&postgres.url()).await;
    let other = Node::start(&postgres.url()).await;
    let cut_off = Node::start(&postgres.url_to(cable.port)).await;

    cut_off.wait_connected(true, Duration::from_secs(10)).await;
    cable.cut();
    cut_off.wait_connected(false, Duration::from_secs(10)).await;
    // Three writes it is not told about.
    for service in ["missed-1", "missed-2", "missed-3"] {
        assert_eq!(
            writer
                .call(
                    "POST",
                    "/token-providers",
                    Some(provider(service, "sbk_file"))
                )
                .await
                .0,
            204
        );
    }
    other.wait_revision(3, SETTLE).await;
    assert_eq!(cut_off.exchange("missed-3").await, 400);
    let (status, ready) = cut_off.readyz().await;
    assert_eq!(status, 200);
    assert_eq!(ready["store"], json!({ "connected": false, "revision": 0 }));

    cable.restore();
    let restored = Instant::now();
    // Reconnect (backoff at most 5 s), then the load of the latest revision on connect.
    cut_off.wait_revision(3, Duration::from_secs(10)).await;
    eprintln!(
        "caught up {:?} after the cable was restored",
        restored.elapsed()
    );
    for service in ["missed-1", "missed-2", "missed-3"] {
        assert_eq!(cut_off.exchange(service).await, 200);
    }
    assert!(cut_off.metric("baton_store_reconnects_total").await >= Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_changed_behind_batons_back_is_refused_with_the_reason() {
    let _shared = ALONE.read().await;
    let postgres = Postgres::start().await;
    let nodes = [
        Node::start(&postgres.url()).await,
        Node::start(&postgres.url()).await,
    ];
    for service in ["first", "second"] {
        assert_eq!(
            nodes[0]
                .call(
                    "POST",
                    "/token-providers",
                    Some(provider(service, "sbk_file"))
                )
                .await
                .0,
            204
        );
    }
    for node in &nodes {
        node.wait_revision(2, SETTLE).await;
    }
    let client = postgres.client().await;

    // An old document replayed as a newer revision: its MAC covers its own revision.
    client
        .execute(
            "INSERT INTO baton_revisions (revision, document, written_by) \
             SELECT 100, document, 'mallory' FROM baton_revisions WHERE revision = 1",
            &[],
        )
        .await
        .unwrap();
    client
        .batch_execute("NOTIFY baton_revision, '100'")
        .await
        .unwrap();
    for node in &nodes {
        wait_log(&node.baton, "holds the document of revision 1").await;
        let (_, ready) = node.readyz().await;
        assert_eq!(ready["store"]["revision"], 2, "the last good one serves");
        assert_eq!(node.exchange("second").await, 200);
    }
    let (status, body) = nodes[1]
        .call(
            "POST",
            "/token-providers",
            Some(provider("third", "sbk_file")),
        )
        .await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("revision 100 in the store holds the document of revision 1"),
        "{body}"
    );

    // An edit of the latest row's document (here: its token provider's service).
    client
        .execute("DELETE FROM baton_revisions WHERE revision = 100", &[])
        .await
        .unwrap();
    client
        .execute(
            "UPDATE baton_revisions SET document = replace(document, 'second', 'secend') \
             WHERE revision = 2",
            &[],
        )
        .await
        .unwrap();
    let (status, body) = nodes[1]
        .call(
            "POST",
            "/token-providers",
            Some(provider("third", "sbk_file")),
        )
        .await;
    assert_eq!(status, 500, "{body}");
    let reason = body["error"].as_str().unwrap();
    assert!(
        reason.contains("revision 2 in the store does not match the master key"),
        "{body}"
    );
    assert_eq!(max_revision(&client).await, 2, "nothing written");
    // A baton starting now refuses to start on it, with the reason.
    let dir = tempfile::tempdir().unwrap();
    node_files(dir.path(), STORE);
    let output = run_baton(
        dir.path(),
        &["serve"],
        &[
            ("MASTER_KEY", MASTER_KEY),
            ("BATON_STORE_URL", postgres.url().as_str()),
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("revision 2 in the store does not match the master key"),
        "{stderr}"
    );
    for node in &nodes {
        assert_eq!(node.exchange("second").await, 200, "still served");
    }
}

async fn wait_log(baton: &Baton, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !baton.log().contains(text) {
        assert!(
            Instant::now() < deadline,
            "no {text:?} in:\n{}",
            baton.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_mid_write_leaves_no_partial_state() {
    let _shared = ALONE.read().await;
    let postgres = Postgres::start().await;
    let mut nodes = vec![
        Node::start(&postgres.url()).await,
        Node::start(&postgres.url()).await,
        Node::start(&postgres.url()).await,
    ];
    assert_eq!(
        nodes[0]
            .call(
                "POST",
                "/token-providers",
                Some(provider("kept", "sbk_file"))
            )
            .await
            .0,
        204
    );
    let client = postgres.client().await;
    // The test holds the store's lock: the write below waits inside its transaction.
    client
        .execute("SELECT pg_advisory_lock($1)", &[&STORE_LOCK])
        .await
        .unwrap();
    let victim = nodes.remove(0);
    let write = tokio::spawn({
        let url = format!("{}/token-providers", victim.admin_url);
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(ADMIN_TOKEN)
                .json(&provider("lost", "sbk_file"))
                .send()
                .await
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'baton' \
                 AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the write never waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    victim.baton.signal("KILL");
    assert!(
        write.await.unwrap().is_err(),
        "no answer from a killed baton"
    );
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&STORE_LOCK])
        .await
        .unwrap();

    // Nothing of it: the same revision, no "lost"; the others write and serve on.
    let (status, body) = nodes[0]
        .call(
            "POST",
            "/token-providers",
            Some(provider("next", "sbk_file")),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let documents: Vec<String> = client
        .query(
            "SELECT document FROM baton_revisions ORDER BY revision",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(documents.len(), 2);
    assert!(documents.iter().all(|d| !d.contains("\"lost\"")));
    served_by_all(&[&nodes[1]], "next", Instant::now(), SETTLE).await;
    for node in &nodes {
        assert_eq!(node.exchange("kept").await, 200);
        assert_eq!(node.exchange("lost").await, 400);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_metacharacters_in_every_admin_field_round_trip_as_data() {
    let _shared = ALONE.read().await;
    let postgres = Postgres::start().await;
    let (a, b) = (
        Node::start(&postgres.url()).await,
        Node::start(&postgres.url()).await,
    );
    let nasty = "x'); DROP TABLE baton_revisions; -- \" \\ $1 $$ %s ; \u{0} ✓";
    // CEL string literals take no NUL; the rest, escaped as JSON (which CEL reads alike).
    let nasty_cel = serde_json::to_string(&nasty.replace('\u{0}', "")).unwrap();
    let idp = json!({
        "iss": format!("https://nasty.idp/{nasty}"),
        "aud": nasty,
        "algs": ["HS256"],
        "key": URL_SAFE_NO_PAD.encode(nasty),
        "mapping": { "sub.$": "$.sub", "note": nasty },
        "condition": format!("claims.sub != {nasty_cel}"),
    });
    let (status, body) = a.call("POST", "/idps", Some(idp.clone())).await;
    assert_eq!(status, 204, "{body}");
    let (status, key) = a
        .call("POST", "/keys", Some(json!({ "name": nasty, "use": "ci" })))
        .await;
    assert_eq!(status, 200, "{key}");
    let provider = json!({
        "service": "nasty_-app",
        "keyId": key["id"],
        "mapping": { "sub.$": "$.sub", "note": nasty },
        "condition": format!("idp != {nasty_cel}"),
    });
    assert_eq!(
        a.call("POST", "/token-providers", Some(provider.clone()))
            .await
            .0,
        204
    );

    b.wait_revision(3, SETTLE).await;
    let (_, idps) = b.call("GET", "/idps", None).await;
    let listed = idps["idps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["aud"] == nasty)
        .unwrap_or_else(|| panic!("{idps}"));
    for field in ["iss", "aud", "algs", "mapping", "condition"] {
        assert_eq!(listed[field], idp[field], "{field}");
    }
    let (_, keys) = b.call("GET", "/keys", None).await;
    assert!(
        keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["name"] == nasty),
        "{keys}"
    );
    let (_, providers) = b.call("GET", "/token-providers", None).await;
    let listed = providers["tokenProviders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["service"] == "nasty_-app")
        .unwrap();
    for field in ["keyId", "mapping", "condition"] {
        assert_eq!(listed[field], provider[field], "{field}");
    }
    assert_eq!(b.exchange("nasty_-app").await, 200);
    // The table is still there, with the three revisions.
    assert_eq!(max_revision(&postgres.client().await).await, 3);
    // A delete names the IdP by the same characters.
    let (status, body) = b
        .call(
            "DELETE",
            "/idps",
            Some(json!({ "iss": idp["iss"], "aud": nasty })),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    a.wait_revision(4, SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_is_baton_s_and_a_snapshot_starts_a_baton_while_the_store_is_down() {
    let _shared = ALONE.read().await;
    let mut postgres = Postgres::start().await;

    // Without `migrate`, a start on an empty database names `baton store migrate`.
    let dir = tempfile::tempdir().unwrap();
    let store = r#"url_env = "BATON_STORE_URL"
snapshot_file = "snapshot.json""#;
    node_files(dir.path(), store);
    let baton = |args: &[&str]| {
        run_baton(
            dir.path(),
            args,
            &[
                ("MASTER_KEY", MASTER_KEY),
                ("BATON_STORE_URL", postgres.url().as_str()),
            ],
        )
    };
    let output = baton(&["serve"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("baton store migrate"), "{stderr}");
    // `baton store migrate`, twice: it migrates once.
    let output = baton(&["store", "migrate"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("from version 0 to 1"), "{stdout}");
    let output = baton(&["store", "migrate"]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("at version 1 already"));
    // `baton check` reads the store as `serve` would, and names it (never its password).
    let output = baton(&["check"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("store: PostgreSQL at 127.0.0.1, database postgres"),
        "{stdout}"
    );
    assert!(!stdout.contains(support::postgres::PASSWORD));

    let node = Node::start_in(dir, &postgres.url(), store, MASTER_KEY).await;
    assert_eq!(
        node.call(
            "POST",
            "/token-providers",
            Some(provider("snapped", "sbk_file"))
        )
        .await
        .0,
        204
    );
    let snapshot = node.dir.path().join("snapshot.json");
    let dir = node.dir;
    drop(node.baton);

    // The store down: a baton starts from the snapshot file, serves it, says so.
    postgres.stop().await;
    let node = Node::start_in(dir, &postgres.url(), store, MASTER_KEY).await;
    assert!(snapshot.exists());
    assert_eq!(node.exchange("snapped").await, 200);
    let (status, ready) = node.readyz().await;
    assert_eq!(status, 200);
    assert_eq!(ready["store"], json!({ "connected": false, "revision": 1 }));
    assert!(
        node.baton
            .log()
            .contains("starting from the snapshot file's revision 1")
    );

    // Without a snapshot, a start with the store down fails and says why.
    let other = tempfile::tempdir().unwrap();
    node_files(other.path(), r#"url_env = "BATON_STORE_URL""#);
    let output = run_baton(
        other.path(),
        &["serve"],
        &[
            ("MASTER_KEY", MASTER_KEY),
            ("BATON_STORE_URL", postgres.url().as_str()),
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the store is unreachable"), "{stderr}");
    assert!(!stderr.contains(support::postgres::PASSWORD), "{stderr}");

    // Back up, it catches up without a restart.
    postgres.resume().await;
    node.wait_connected(true, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_key_is_rotated_by_resealing_every_entry() {
    let _shared = ALONE.read().await;
    let postgres = Postgres::start().await;
    let old = Node::start(&postgres.url()).await;
    let (status, key) = old
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "rotated", "use": "ci" })),
        )
        .await;
    assert_eq!(status, 200);
    let key_id = key["id"].as_str().unwrap().to_owned();
    assert_eq!(
        old.call(
            "POST",
            "/token-providers",
            Some(provider("rotated-app", &key_id))
        )
        .await
        .0,
        204
    );

    // `baton store reseal` with the new key in the config and the old one named.
    let dir = tempfile::tempdir().unwrap();
    node_files(dir.path(), STORE);
    let output = run_baton(
        dir.path(),
        &["store", "reseal", "--old-master-key-env", "OLD_MASTER_KEY"],
        &[
            ("MASTER_KEY", OTHER_MASTER_KEY),
            ("OLD_MASTER_KEY", MASTER_KEY),
            ("BATON_STORE_URL", postgres.url().as_str()),
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("as revision 3"));

    // The old-key baton refuses revision 3 and keeps serving revision 2; a new-key baton
    // serves revision 3, the same entries.
    wait_log(
        &old.baton,
        "revision 3 in the store does not match the master key",
    )
    .await;
    assert_eq!(old.exchange("rotated-app").await, 200);
    let new = Node::start_with(&postgres.url(), STORE, OTHER_MASTER_KEY).await;
    let (_, ready) = new.readyz().await;
    assert_eq!(ready["store"]["revision"], 3);
    assert_eq!(new.exchange("rotated-app").await, 200);
    let (status, _) = new
        .call("DELETE", "/token-providers/rotated-app", None)
        .await;
    assert_eq!(status, 204, "the new key writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_database_is_verified_against_ca_file() {
    let _shared = ALONE.read().await;
    let ca = support::tls::TestCa::new();
    let postgres = Postgres::start_tls(&ca.leaf("postgres", 1)).await;
    let url = format!("{}?sslmode=verify-full", postgres.url());

    // Without the test CA among the roots the handshake fails: never a fallback to
    // cleartext, and the URL's password is not in the error.
    let dir = tempfile::tempdir().unwrap();
    node_files(dir.path(), STORE);
    let output = run_baton(
        dir.path(),
        &["serve"],
        &[
            ("MASTER_KEY", MASTER_KEY),
            ("BATON_STORE_URL", url.as_str()),
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("certificate"), "{stderr}");
    assert!(!stderr.contains(support::postgres::PASSWORD), "{stderr}");

    // With it, every connection of the two batons is TLS.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).unwrap();
    let store = format!("{STORE}\nca_file = \"ca.pem\"");
    let a = Node::start_in(dir, &url, &store, MASTER_KEY).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).unwrap();
    let b = Node::start_in(dir, &url, &store, MASTER_KEY).await;
    let (status, body) = a
        .call(
            "POST",
            "/token-providers",
            Some(provider("over-tls", "sbk_file")),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    served_by_all(&[&b], "over-tls", Instant::now(), SETTLE).await;
    let rows = postgres
        .client()
        .await
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'baton'",
            &[],
        )
        .await
        .unwrap();
    let tls: Vec<bool> = rows.iter().map(|row| row.get(0)).collect();
    // Each baton's follower, and a's writer.
    assert!(tls.len() >= 3, "{tls:?}");
    assert!(tls.iter().all(|ssl| *ssl), "{tls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_that_does_not_build_with_a_baton_s_file_is_refused_there_alone() {
    let _shared = ALONE.read().await;
    let postgres = Postgres::start().await;
    let a = Node::start(&postgres.url()).await;
    // b's file has a provider "clash" of its own (the tables after [store] are b's only).
    let own_provider = format!(
        "{STORE}\n\n[[token_providers]]\nservice = \"clash\"\nkey = \"sbk_file\"\nmapping = {{ \"sub.$\" = \"$.sub\" }}"
    );
    let b = Node::start_with(&postgres.url(), &own_provider, MASTER_KEY).await;
    assert_eq!(
        a.call(
            "POST",
            "/token-providers",
            Some(provider("shared", "sbk_file"))
        )
        .await
        .0,
        204
    );
    b.wait_revision(1, SETTLE).await;

    // Through a, an API provider "clash": valid with a's file, a duplicate with b's.
    assert_eq!(
        a.call(
            "POST",
            "/token-providers",
            Some(provider("clash", "sbk_file"))
        )
        .await
        .0,
        204
    );
    wait_log(&b.baton, "refusing a store revision").await;
    assert!(
        b.baton
            .log()
            .contains("does not build with this baton's config file")
    );
    let (_, ready) = b.readyz().await;
    assert_eq!(ready["store"]["revision"], 1, "b keeps serving revision 1");
    assert_eq!(b.exchange("shared").await, 200);
    let metrics = reqwest::get(format!("{}/metrics", b.admin_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"baton_config_reloads_total{source="store",outcome="rejected"} 1"#),
        "{metrics}"
    );
    // A write through b is validated against the latest revision with b's file: refused.
    let (status, body) = b
        .call(
            "POST",
            "/token-providers",
            Some(provider("more", "sbk_file")),
        )
        .await;
    assert_eq!(status, 409, "{body}");

    // Once the clash is gone from the store, b loads the latest revision.
    assert_eq!(
        a.call("DELETE", "/token-providers/clash", None).await.0,
        204
    );
    b.wait_revision(3, SETTLE).await;
    assert_eq!(b.exchange("shared").await, 200);
}
