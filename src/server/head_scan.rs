//! A second look at each HTTP/1 request head for what hyper reads one way and a proxy in
//! front of baton may read another: how request smuggling begins.
//!
//! - `Transfer-Encoding` with `Content-Length`: hyper frames the body by the first and drops
//!   the second before the service can see it (RFC 9112 §6.1), then closes the connection
//!   after answering; a front proxy may have framed it by `Content-Length`. §6.1 lets a
//!   server refuse such a request, and a security boundary should.
//! - A bare LF ending a line: hyper splits lines there (§2.2 allows it), a front proxy may
//!   not, and then it sees one field where hyper sees two.
//!
//! Public for the fuzz target (`fuzz/fuzz_targets/head_scan.rs`). The scan works on the raw bytes as they are read, only up to the head's empty line, and
//! is bounded: a head over [`MAX_SCANNED`] bytes is left to hyper's own limits, and each
//! byte is searched at most once however the head is split over reads.

/// What a head shows that another parser may read differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Smuggling {
    /// Both `Transfer-Encoding` and `Content-Length`.
    BothLengths = 1,
    /// A line ended by LF alone.
    BareLineFeed = 2,
    /// A head too large to scan ([`MAX_SCANNED`]): refused (431) rather than passed unread.
    TooLarge = 3,
}

/// A head larger than this is not scanned: hyper refuses it (431).
const MAX_SCANNED: usize = super::MAX_HEAD_BYTES;

/// The scan of the head now arriving.
#[derive(Debug, Default)]
pub struct HeadScan {
    /// The head's bytes so far, when it spans reads (empty while it fits in one).
    partial: Vec<u8>,
    /// How far `partial` has been searched for the head's end.
    searched: usize,
    /// The head's end was found (or the head was too large): nothing more to look at.
    finished: bool,
    /// The head's end was found.
    complete: bool,
    /// A byte other than CR or LF was seen: the empty lines a request line may follow (RFC
    /// 9112 §2.2, which httparse skips) are behind.
    started: bool,
}

/// The framing fields a head names, as bits.
const TRANSFER_ENCODING: u8 = 1;
const CONTENT_LENGTH: u8 = 2;

// === impl Smuggling ===

impl Smuggling {
    /// The inverse of `as u8`: 0 is none.
    pub(crate) fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::BothLengths),
            2 => Some(Self::BareLineFeed),
            3 => Some(Self::TooLarge),
            _ => None,
        }
    }
}

// === impl HeadScan ===

impl HeadScan {
    /// Starts on a new head (keeping the buffer's allocation).
    pub fn restart(&mut self) {
        if self.partial.capacity() > 8 * 1024 {
            // One large head does not keep its buffer for the connection's life.
            self.partial = Vec::new();
        }
        self.partial.clear();
        self.started = false;
        self.searched = 0;
        self.finished = false;
        self.complete = false;
    }

    /// Whether the bytes fed so far hold the head's end.
    pub fn head_complete(&self) -> bool {
        self.complete
    }

    /// Takes the next bytes read; once the head's end is among them, says what it shows.
    pub fn feed(&mut self, mut read: &[u8]) -> Option<Smuggling> {
        if self.finished {
            return None;
        }
        if !self.started {
            let empty_lines = read
                .iter()
                .take_while(|&&b| matches!(b, b'\r' | b'\n'))
                .count();
            read = &read[empty_lines..];
            if read.is_empty() {
                return None;
            }
            self.started = true;
        }
        let first = self.partial.is_empty();
        if first {
            // The common case: the whole head in one read, looked at where it lies.
            if let Some(end) = head_end(read, 0) {
                self.finished = true;
                self.complete = true;
                return if end <= MAX_SCANNED {
                    inspect(&read[..end])
                } else {
                    Some(Smuggling::TooLarge)
                };
            }
        }
        let room = MAX_SCANNED - self.partial.len();
        self.partial
            .extend_from_slice(&read[..read.len().min(room)]);
        if !first {
            // An end split over reads begins at most three bytes before the new ones.
            let from = self.searched.saturating_sub(3);
            if let Some(end) = head_end(&self.partial, from) {
                self.finished = true;
                self.complete = true;
                let found = inspect(&self.partial[..end]);
                self.partial.clear();
                return found;
            }
        }
        self.searched = self.partial.len();
        if self.partial.len() == MAX_SCANNED {
            self.finished = true;
            self.partial = Vec::new();
            return Some(Smuggling::TooLarge);
        }
        None
    }
}

/// Where the head in `bytes` ends (just after its empty line), looking from `from`.
fn head_end(bytes: &[u8], from: usize) -> Option<usize> {
    memchr::memchr_iter(b'\n', &bytes[from..])
        .map(|i| from + i)
        .find_map(|newline| match &bytes[newline + 1..] {
            [b'\n', ..] => Some(newline + 2),
            [b'\r', b'\n', ..] => Some(newline + 3),
            _ => None,
        })
}

/// What a whole head shows.
fn inspect(head: &[u8]) -> Option<Smuggling> {
    let mut framing = 0;
    for newline in memchr::memchr_iter(b'\n', head) {
        if newline == 0 || head[newline - 1] != b'\r' {
            return Some(Smuggling::BareLineFeed);
        }
        let line = &head[newline + 1..];
        // hyper refuses whitespace before the colon, so the name is all before it.
        let names = |name: &[u8]| {
            line.get(..=name.len()).is_some_and(|start| {
                start[..name.len()].eq_ignore_ascii_case(name) && start[name.len()] == b':'
            })
        };
        match line.first() {
            Some(b't' | b'T') if names(b"transfer-encoding") => framing |= TRANSFER_ENCODING,
            Some(b'c' | b'C') if names(b"content-length") => framing |= CONTENT_LENGTH,
            _ => {}
        }
    }
    (framing == TRANSFER_ENCODING | CONTENT_LENGTH).then_some(Smuggling::BothLengths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(reads: &[&[u8]]) -> Vec<Option<Smuggling>> {
        let mut scan = HeadScan::default();
        reads.iter().map(|read| scan.feed(read)).collect()
    }

    #[test]
    fn both_lengths_are_found_in_any_case_and_order() {
        let head = b"POST / HTTP/1.1\r\nHost: a\r\ncontent-LENGTH: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(scan(&[head]), [Some(Smuggling::BothLengths)]);
        let head =
            b"POST / HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\nContent-Length: 4\r\n\r\nbody";
        assert_eq!(scan(&[head]), [Some(Smuggling::BothLengths)]);
    }

    #[test]
    fn one_length_field_or_the_names_elsewhere_are_fine() {
        for head in [
            &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n",
            b"GET / HTTP/1.1\r\nX-Note: content-length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Lengthy: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(scan(&[head]), [None], "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn a_bare_line_feed_in_the_head_is_found_but_not_in_the_body() {
        let head = b"GET / HTTP/1.1\r\nX-A: 1\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(scan(&[head]), [Some(Smuggling::BareLineFeed)]);
        assert_eq!(
            scan(&[b"GET / HTTP/1.1\nHost: a\n\n"]),
            [Some(Smuggling::BareLineFeed)]
        );
        let body_after = b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nline\nline";
        assert_eq!(scan(&[body_after]), [None]);
    }

    #[test]
    fn a_head_split_anywhere_over_reads_gives_the_same_answer() {
        let head: &[u8] =
            b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        for cut in 1..head.len() {
            let (first, rest) = head.split_at(cut);
            let found: Vec<_> = scan(&[first, rest]).into_iter().flatten().collect();
            assert_eq!(found, [Smuggling::BothLengths], "cut at {cut}");
        }
        // Byte by byte: found once, at the end of the head.
        let bytes: Vec<&[u8]> = head.chunks(1).collect();
        let found = scan(&bytes);
        let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(found[end - 1], Some(Smuggling::BothLengths));
        assert_eq!(found.iter().flatten().count(), 1);
    }

    #[test]
    fn empty_lines_before_the_request_line_do_not_end_the_scan() {
        let head = b"\r\n\r\n\nGET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n";
        assert_eq!(scan(&[head]), [Some(Smuggling::BareLineFeed)]);
        assert_eq!(
            scan(&[
                b"\r\n",
                b"\r\n",
                b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
            ]),
            [None, None, Some(Smuggling::BothLengths)]
        );
    }

    #[test]
    fn a_head_over_the_bound_is_refused_not_passed_unscanned() {
        let mut scan = HeadScan::default();
        let big = vec![b'a'; MAX_SCANNED];
        assert_eq!(scan.feed(b"GET / HTTP/1.1\r\nX-Big: "), None);
        assert_eq!(scan.feed(&big), Some(Smuggling::TooLarge));
        assert_eq!(
            scan.feed(b"\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            None
        );
        assert!(scan.partial.capacity() == 0, "the buffer is released");
        let mut whole = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        whole.extend_from_slice(&big);
        whole.extend_from_slice(b"\r\n\r\n");
        assert_eq!(HeadScan::default().feed(&whole), Some(Smuggling::TooLarge));
        scan.restart();
        assert_eq!(
            scan.feed(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some(Smuggling::BothLengths)
        );
    }
}
