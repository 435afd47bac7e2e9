//! The demo's page in a real browser: start `baton demo --port 0`, open the page it prints
//! first under `Try:` in headless Chromium (Debian's `/usr/bin/chromium`, driven by
//! `playwright-core` from `tests/interop`: `tests/interop/demo_browser.mjs`), click through
//! every step and check what each shows:
//! 1. signing in as `carol` gives an IdP token whose `sub` is `user|carol`;
//! 2. `POST /tokens` from the page (cross-origin) gives a baton token: `iss` baton's,
//!    `act.sub` `user|carol`, ES256;
//! 3. the app called through baton's proxy from the page, with the IdP token, received a
//!    baton token for carol and the IdP token in none of its headers;
//! 4. each way the page breaks the token is refused by `baton explain`'s trace at the stage
//!    that catches it (`signature`, `select IdP`, `algorithm`).
//!
//! A screenshot of each step goes to `target/demo-screenshots/` (the test's output; their
//! paths are printed). Chromium, Node.js and `npm ci` in `tests/interop` are required: when
//! missing this test fails, it never skips (`scripts/test.sh` installs them).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::demo::Demo;

/// Debian's Chromium, which the script launches.
const CHROMIUM: &str = "/usr/bin/chromium";
/// The screenshots the script saves, one per step (step 4 once per breakage).
const SCREENSHOTS: [&str; 7] = [
    "0-page",
    "1-sign-in",
    "2-exchange",
    "3-call",
    "4-explain-sub",
    "4-explain-aud",
    "4-explain-alg",
];
/// How long the whole walk through the page may take.
const DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn demo_page_walks_every_step_in_chromium() {
    let interop = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/test.sh (it installs Debian's chromium)"
    );
    assert!(
        interop.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run scripts/test.sh (npm ci in tests/interop)"
    );
    let screenshots = screenshot_dir();
    let _ = std::fs::remove_dir_all(&screenshots);

    let demo = Demo::start();
    let page = demo.page_url();
    let mut node = Command::new("node");
    node.arg(interop.join("demo_browser.mjs"))
        .arg(page)
        .arg(&screenshots)
        .current_dir(&interop)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The page talks to 127.0.0.1 only: no proxy stands between.
    for proxy in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        node.env_remove(proxy);
    }
    let mut child = node
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): run scripts/test.sh"));
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "demo_browser.mjs took longer than {DEADLINE:?}:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The paths, in the test's output (`cargo test -- --nocapture` shows them on success).
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the walk through the page failed ({}):\n{stdout}\n{stderr}\n(the demo printed:\n{})",
        output.status,
        demo.printed.join("\n")
    );
    assert_eq!(stdout.lines().last(), Some("ok"), "{stdout}\n{stderr}");

    for name in SCREENSHOTS {
        let path = screenshots.join(format!("{name}.png"));
        assert!(
            stdout.contains(&format!("screenshot {}", path.display())),
            "{name} not reported:\n{stdout}"
        );
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
            "{} is not a screenshot ({} bytes)",
            path.display(),
            bytes.len()
        );
    }
}

/// `target/demo-screenshots/` (wherever the target directory is: its `tmp` is
/// `CARGO_TARGET_TMPDIR`).
fn screenshot_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("demo-screenshots")
}
