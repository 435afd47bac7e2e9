//! The real `baton serve`'s runtime: how many worker threads, and which scheduler, for the
//! CPUs the process may run on (pinned with `taskset`) and for `[proxy] threads`.

mod support;

use support::baton::{Baton, reserve_addr};

/// A config that serves (its IdP's keys need never be reachable), with `threads` if given.
fn config(listen: std::net::SocketAddr, threads: Option<usize>) -> String {
    let admin = reserve_addr();
    let threads = threads.map_or_else(String::new, |n| format!("threads = {n}\n"));
    format!(
        r#"
[proxy]
listen = "{listen}"
service = "app"
{threads}
[admin]
listen = "{admin}"

[[keys]]
id = "sbk_runtime"
algorithm = "HS256"
secret_env = "RUNTIME_TEST_KEY"

[[idps]]
issuer = "https://idp.runtime.test"
audience = "app"
jwks_url = "http://127.0.0.1:9/jwks.json"
mapping = {{ "sub.$" = "$.sub" }}

[[token_providers]]
service = "app"
key = "sbk_runtime"
mapping = {{ "sub.$" = "$.sub" }}
"#
    )
}

/// The `runtime started` line of the log.
fn runtime_line(log: &str) -> &str {
    log.lines()
        .find(|line| line.contains("runtime started"))
        .unwrap_or_else(|| panic!("no `runtime started` line in:\n{log}"))
}

async fn started_runtime(cpus: &str, threads: Option<usize>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let addr = reserve_addr();
    let config = config(addr, threads);
    let baton = Baton::launch(dir.path(), addr, &config)
        .env("RUNTIME_TEST_KEY", "sbsec_runtime_test_secret")
        .cpus(cpus)
        .start()
        .await;
    runtime_line(&baton.log()).to_owned()
}

#[tokio::test]
async fn without_threads_one_allowed_cpu_runs_the_current_thread_runtime() {
    let line = started_runtime("0", None).await;
    assert!(
        line.contains("threads=1") && line.contains("current-thread"),
        "{line}"
    );
}

#[tokio::test]
async fn without_threads_every_allowed_cpu_gets_a_worker() {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let all = (0..cpus)
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let line = started_runtime(&all, None).await;
    let scheduler = if cpus == 1 {
        "current-thread"
    } else {
        "multi-thread"
    };
    assert!(
        line.contains(&format!("threads={cpus}")) && line.contains(scheduler),
        "{cpus} CPUs: {line}"
    );
}

#[tokio::test]
async fn an_explicit_thread_count_wins_over_the_allowed_cpus() {
    let line = started_runtime("0", Some(3)).await;
    assert!(
        line.contains("threads=3") && line.contains("multi-thread"),
        "{line}"
    );
}
