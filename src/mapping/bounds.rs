//! Bounds on what a JSONPath may cost, checked on its text.
//!
//! serde_json_path parses with recursive nom combinators that backtrack: a few thousand
//! nested `(` overflow the stack, and every nested filter (`[?@[?@…]]`) doubles the parse
//! time. Its evaluator re-runs a filter's whole expression for every candidate value,
//! re-compiles a `match()`/`search()` regex for every candidate (from the token, when the
//! pattern is a query), and multiplies the work by the subtree size for each nested
//! descendant segment (`..`). So a path is measured here before it is parsed ([`check_size`])
//! and its shape after ([`cost`]), in one pass over at most [`MAX_PATH_BYTES`] bytes each.
//!
//! The cost model: every query runs over at most `token::MAX_CLAIM_VALUES` values, so one
//! *step* is one pass over them. A path that visits more than the values its names and
//! indexes pick (a wildcard, a slice, a filter, `..`) costs one step; each query, segment
//! and function call inside a filter costs one step more (it runs once per candidate, and
//! the candidates of all the filter's runs are distinct values);
//! bracketed selector lists (`[0,1]`) multiply it all by their length (`[*,*]` visits every
//! child twice).

/// The longest JSONPath accepted, in bytes. Real claim paths are a few dozen bytes.
pub const MAX_PATH_BYTES: usize = 512;

/// The deepest nesting of brackets and parentheses in a JSONPath. Real paths nest at most
/// 3 or 4 (`$.a[?(@.b[?(@.c == 1)])]` is 4); each nested filter doubles the parse time
/// (6 levels parse in under 10 ms, whatever the rest of the path holds).
pub const MAX_PATH_NESTING: usize = 6;

/// The most times one path's bracketed selector lists may select a node (`[0,1]` is 2,
/// `[0,1][0,1]` is 4).
pub const MAX_PATH_FANOUT: u32 = 4;

/// The most descendant segments (`..`) in one path: each one after the first multiplies
/// the work by the depth of the claims.
pub const MAX_DESCENDANT_SEGMENTS: u32 = 1;

/// JSONPath functions baton refuses: they compile a regular expression for every value a
/// filter looks at, and the pattern may come from the token itself (`match(@, $.p)`).
const REFUSED_FUNCTIONS: [&str; 2] = ["match", "search"];

/// Checks the length and the nesting of `path`, before it is parsed.
pub(super) fn check_size(path: &str) -> Result<(), String> {
    if path.len() > MAX_PATH_BYTES {
        return Err(format!(
            "the JSONPath is {} bytes long; at most {MAX_PATH_BYTES} are allowed",
            path.len()
        ));
    }
    let bytes = path.as_bytes();
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"') => {
                let end = skip_string(bytes, i, quote);
                check_unicode_escapes(&bytes[i + 1..end])?;
                i = end;
            }
            b'[' | b'(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    if deepest > MAX_PATH_NESTING {
        return Err(format!(
            "the JSONPath nests {deepest} levels deep; at most {MAX_PATH_NESTING} are allowed"
        ));
    }
    Ok(())
}

/// The evaluation cost of a parsed (so well-formed) `path`, in steps; or why its shape is
/// refused.
pub(super) fn cost(path: &str) -> Result<u32, String> {
    let bytes = path.as_bytes();
    let mut scan = Scan::default();
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        let in_filter = scan.filters_open > 0;
        match byte {
            quote @ (b'\'' | b'"') => i = skip_string(bytes, i, quote),
            b'[' => {
                scan.filter_step(in_filter);
                scan.open.push(Frame::Bracket {
                    selectors: 1,
                    filter: false,
                });
            }
            b'(' => scan.open.push(Frame::Paren),
            b']' => {
                if let Some(Frame::Bracket { selectors, filter }) = scan.open.pop() {
                    scan.fanout = scan.fanout.saturating_mul(selectors);
                    if filter {
                        scan.filters_open -= 1;
                    }
                }
            }
            b')' => {
                scan.open.pop();
            }
            b',' => {
                if let Some(Frame::Bracket { selectors, .. }) = scan.open.last_mut() {
                    *selectors += 1;
                }
            }
            b'?' => {
                if let Some(Frame::Bracket { filter, .. }) = scan.open.last_mut() {
                    if !*filter {
                        *filter = true;
                        scan.filters_open += 1;
                    }
                    scan.traverses = true;
                }
            }
            b'*' | b':' => scan.traverses = true,
            b'.' => {
                if bytes.get(i + 1) == Some(&b'.') {
                    scan.descendants += 1;
                    scan.traverses = true;
                    i += 1;
                }
                scan.filter_step(in_filter);
            }
            b'@' => scan.steps += 1,
            b'$' if in_filter => {
                if !root_query_is_singular(&bytes[i + 1..]) {
                    return Err("inside a filter, a query from the root `$` may only use \
                                names and indexes (a singular query)"
                        .to_owned());
                }
                scan.steps += 1;
            }
            b if b.is_ascii_alphabetic() || b == b'_' => {
                let start = i;
                while bytes.get(i + 1).is_some_and(|&b| is_name_byte(b)) {
                    i += 1;
                }
                let after_dot = start > 0 && bytes[start - 1] == b'.';
                if !after_dot && next_significant(bytes, i + 1) == Some(b'(') {
                    let name = &path[start..=i];
                    if REFUSED_FUNCTIONS.contains(&name) {
                        return Err(format!(
                            "the JSONPath function `{name}()` is not supported: it compiles \
                             a regular expression for every value it tests"
                        ));
                    }
                    scan.steps += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    if scan.descendants > MAX_DESCENDANT_SEGMENTS {
        return Err(format!(
            "the JSONPath has {} descendant segments (`..`); at most \
             {MAX_DESCENDANT_SEGMENTS} is allowed",
            scan.descendants
        ));
    }
    if scan.fanout > MAX_PATH_FANOUT {
        return Err(format!(
            "the JSONPath's selector lists select a node up to {} times; at most \
             {MAX_PATH_FANOUT} are allowed",
            scan.fanout
        ));
    }
    let passes = u32::from(scan.traverses) + scan.steps;
    Ok(scan.fanout.saturating_mul(passes))
}

#[derive(Debug)]
enum Frame {
    Bracket { selectors: u32, filter: bool },
    Paren,
}

#[derive(Debug)]
struct Scan {
    open: Vec<Frame>,
    /// Open brackets that hold a filter.
    filters_open: usize,
    /// Queries, segments and function calls inside filters.
    steps: u32,
    /// Whether the path visits more than its names and indexes pick.
    traverses: bool,
    descendants: u32,
    fanout: u32,
}

// === impl Scan ===

impl Default for Scan {
    fn default() -> Self {
        Self {
            open: Vec::new(),
            filters_open: 0,
            steps: 0,
            traverses: false,
            descendants: 0,
            fanout: 1,
        }
    }
}

impl Scan {
    /// A segment inside a filter runs once per candidate.
    fn filter_step(&mut self, in_filter: bool) {
        if in_filter {
            self.steps += 1;
        }
    }
}

/// Whether the query after a `$` is singular (RFC 9535 §2.3.5.1: only name and index
/// segments), so it costs a few lookups per candidate rather than a pass over the token.
fn root_query_is_singular(rest: &[u8]) -> bool {
    let mut i = 0;
    loop {
        let Some(next) = next_significant_index(rest, i) else {
            return true;
        };
        i = next;
        match rest[i] {
            b'.' => match rest.get(i + 1) {
                Some(b'.' | b'*') => return false,
                _ => {
                    i += 1;
                    while rest.get(i).is_some_and(|&b| is_name_byte(b)) {
                        i += 1;
                    }
                }
            },
            b'[' => {
                let Some(start) = next_significant_index(rest, i + 1) else {
                    return false;
                };
                i = match rest[start] {
                    quote @ (b'\'' | b'"') => skip_string(rest, start, quote) + 1,
                    b'-' | b'0'..=b'9' => {
                        let mut end = start + 1;
                        while rest.get(end).is_some_and(u8::is_ascii_digit) {
                            end += 1;
                        }
                        end
                    }
                    _ => return false,
                };
                match next_significant_index(rest, i) {
                    Some(close) if rest[close] == b']' => i = close + 1,
                    _ => return false,
                }
            }
            _ => return true,
        }
    }
}

/// The index of the quote closing the string literal opened at `open` (or the end).
fn skip_string(bytes: &[u8], open: usize, quote: u8) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b if b == quote => return i,
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

/// Every `\u` in a string literal is followed by four hex digits. serde_json_path 0.7.2
/// panics (an `unreachable!`) on a literal that ends inside one (`$['\u`), so this is checked
/// before the parser sees it; the parser checks the rest of the literal's syntax.
fn check_unicode_escapes(literal: &[u8]) -> Result<(), String> {
    let mut i = 0;
    while i < literal.len() {
        if literal[i] == b'\\' {
            if literal.get(i + 1) == Some(&b'u')
                && !literal
                    .get(i + 2..i + 6)
                    .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            {
                return Err("invalid JSONPath: a \\u escape needs four hex digits".to_owned());
            }
            i += 1;
        }
        i += 1;
    }
    Ok(())
}

/// Member-name bytes (RFC 9535 §2.5.1.1): ASCII letters, digits, `_`, and any non-ASCII.
fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte >= 0x80
}

fn next_significant_index(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len()).find(|&i| !bytes[i].is_ascii_whitespace())
}

fn next_significant(bytes: &[u8], from: usize) -> Option<u8> {
    next_significant_index(bytes, from).map(|i| bytes[i])
}
