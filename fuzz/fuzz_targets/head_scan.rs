//! The request-smuggling scan of HTTP/1 heads, `server::head_scan::HeadScan`, on any bytes
//! split any way over reads.
//!
//! The first byte picks where the rest is cut into reads. Whatever the cuts, the scan must
//! give the same answer as for the bytes in one read (a client chooses how its head is split
//! over TCP segments), answer at most once per head, and never panic.

#![no_main]

use baton::server::head_scan::HeadScan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut_seed, bytes)) = data.split_first() else {
        return;
    };
    let mut whole = HeadScan::default();
    let expected = whole.feed(bytes);

    let mut split = HeadScan::default();
    let step = usize::from(cut_seed % 16) + 1;
    let answers: Vec<_> = bytes
        .chunks(step)
        .filter_map(|read| split.feed(read))
        .collect();
    assert!(answers.len() <= 1, "answered more than once: {answers:?}");
    assert_eq!(answers.first().copied(), expected, "cut every {step} bytes");
});
