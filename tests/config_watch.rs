//! The config file's watch on the real `baton serve`: a Kubernetes ConfigMap update (the
//! kubelet's atomic `..data` symlink swap) and a plain edit are served at once, not at the
//! next 2 s content poll.

mod support;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use support::baton::{Baton, reserve_addr};

/// A config that serves (its IdP's keys need never be reachable); `version` goes into the
/// provider's mapping, so each version is a different configuration.
fn config(listen: std::net::SocketAddr, admin: std::net::SocketAddr, version: u32) -> String {
    format!(
        r#"
[proxy]
listen = "{listen}"
service = "app"

[admin]
listen = "{admin}"

[[keys]]
id = "sbk_watch"
algorithm = "HS256"
secret = "sbsec_watch_test_secret_value"

[[idps]]
issuer = "https://idp.watch.test"
audience = "app"
jwks_url = "http://127.0.0.1:9/jwks.json"
mapping = {{ "sub.$" = "$.sub" }}

[[token_providers]]
service = "app"
key = "sbk_watch"
mapping = {{ "sub.$" = "$.sub", "version" = "v{version}" }}
"#
    )
}

/// The config generation the admin listener reports (1 at start, +1 per applied reload).
async fn generation(client: &reqwest::Client, admin: std::net::SocketAddr) -> u64 {
    let readyz: serde_json::Value = client
        .get(format!("http://{admin}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    readyz["config_generation"].as_u64().unwrap()
}

/// How long until the generation passes `before`, polled every 5 ms (panics after 5 s).
async fn time_to_reload(
    client: &reqwest::Client,
    admin: std::net::SocketAddr,
    before: u64,
    changed: Instant,
    baton: &Baton,
) -> Duration {
    loop {
        if generation(client, admin).await > before {
            return changed.elapsed();
        }
        assert!(
            changed.elapsed() < Duration::from_secs(5),
            "the change was never applied:\n{}",
            baton.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One ConfigMap update as the kubelet writes it: a new timestamped directory, a new
/// `..data_tmp` symlink to it renamed over `..data`, the old directory removed.
fn swap_configmap(mount: &Path, old: &str, new: &str, text: &str) {
    std::fs::create_dir(mount.join(new)).unwrap();
    std::fs::write(mount.join(new).join("baton.toml"), text).unwrap();
    symlink(new, mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    std::fs::remove_dir_all(mount.join(old)).unwrap();
}

#[tokio::test]
async fn a_configmap_swap_and_an_edit_are_served_well_before_the_poll() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("config");
    std::fs::create_dir(&mount).unwrap();
    let (listen, admin) = (reserve_addr(), reserve_addr());
    // The layout of a ConfigMap volume: baton.toml -> ..data/baton.toml, ..data -> ..v1.
    std::fs::create_dir(mount.join("..v1")).unwrap();
    std::fs::write(mount.join("..v1/baton.toml"), config(listen, admin, 1)).unwrap();
    symlink("..v1", mount.join("..data")).unwrap();
    symlink("..data/baton.toml", mount.join("baton.toml")).unwrap();
    let baton = Baton::launch(dir.path(), listen, "")
        .config_file(mount.join("baton.toml"))
        .start()
        .await;
    let client = reqwest::Client::new();
    assert_eq!(generation(&client, admin).await, 1);

    // Three updates, a second apart (so a poll that happened to land would show as an
    // outlier, not as the rule).
    let mut latencies = Vec::new();
    for version in 2..=4u32 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let before = generation(&client, admin).await;
        let changed = Instant::now();
        swap_configmap(
            &mount,
            &format!("..v{}", version - 1),
            &format!("..v{version}"),
            &config(listen, admin, version),
        );
        latencies.push(time_to_reload(&client, admin, before, changed, &baton).await);
    }
    latencies.sort();
    eprintln!("ConfigMap swaps served after {latencies:?}");
    // The 2 s poll alone would take a second on average; the watch takes milliseconds.
    assert!(
        latencies[1] < Duration::from_millis(200),
        "ConfigMap swaps took {latencies:?} (median over 200 ms):\n{}",
        baton.log()
    );

    // A plain edit in place (no rename, no symlink) of the file behind the links.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = generation(&client, admin).await;
    let changed = Instant::now();
    std::fs::write(mount.join("..v4/baton.toml"), config(listen, admin, 5)).unwrap();
    let edit = time_to_reload(&client, admin, before, changed, &baton).await;
    eprintln!("an edit in place served after {edit:?}");
    assert!(
        edit < Duration::from_millis(1000),
        "an edit in place took {edit:?}:\n{}",
        baton.log()
    );

    // Rewriting the same content is no reload.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let settled = generation(&client, admin).await;
    std::fs::write(mount.join("..v4/baton.toml"), config(listen, admin, 5)).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(generation(&client, admin).await, settled);
}
