//! The real `baton demo --port 0` as a child process, with what it printed up to the end of
//! its `Try:` block; interrupted (so it removes its temp dir) and then killed on drop.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `baton demo`.
pub struct Demo {
    child: Child,
    /// Every line it printed, up to the blank line after `Try:`.
    pub printed: Vec<String>,
    /// The lines of its `Try:` block, as printed (indented): the page's address, then the
    /// commands.
    pub try_lines: Vec<String>,
}

// === impl Demo ===

impl Demo {
    /// Starts the demo on ephemeral ports and reads its output up to the end of `Try:`.
    pub fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["demo", "--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut demo = Self {
            child,
            printed: Vec::new(),
            try_lines: Vec::new(),
        };

        // Read stdout on a thread so a silent demo cannot hang the test.
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut in_try = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines_rx.recv_timeout(left).unwrap_or_else(|e| {
                panic!(
                    "the demo's commands did not appear ({e}); it printed:\n{}",
                    demo.printed.join("\n")
                )
            });
            demo.printed.push(line.clone());
            if in_try {
                if line.is_empty() {
                    break;
                }
                assert!(
                    line.starts_with("  "),
                    "a line in the Try: block not indented: {line:?}"
                );
                demo.try_lines.push(line);
            } else if line.trim_end() == "Try:" {
                in_try = true;
            }
        }
        demo
    }

    /// The page's address, from the first `Try:` line (`Open URL in a browser…`).
    pub fn page_url(&self) -> &str {
        let open = self.try_lines.first().map_or("", String::as_str);
        open.strip_prefix("  Open ")
            .and_then(|rest| rest.split_once(" in a browser"))
            .map(|(url, _)| url)
            .unwrap_or_else(|| panic!("the first Try: line does not open the page: {open:?}"))
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // Ctrl-C: the demo shuts down and removes its key directory.
            let _ = Command::new("kill")
                .args(["-INT", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
