//! Claims as headers: the `headers` tables of `[proxy]` and `[[proxy.routes]]`, rendered
//! from a minted token's payload into header values that cannot inject anything.
//!
//! A table uses the mapping syntax (`"x-user-id.$" = "$.act.sub"` is a JSONPath,
//! `"x-tenant" = "acme"` a literal), over the payload as the app would decode it. A value
//! becomes text ([`render_value`]): a string as it is, a number or a boolean as JSON text, an
//! array as its elements rendered the same way and joined with `,`, an object as JSON. A path
//! that finds nothing (or `null`) sends no header. The text is then percent-encoded
//! ([`encode`]) so that every byte of the result is visible ASCII or an inner space: no claim
//! value can end a header line, start another, or reach the app as bytes it might read two
//! ways. A value longer than [`MAX_HEADER_VALUE_BYTES`] once encoded is not sent.
//!
//! No HTTP types here: the proxy turns a [`Rendered`] list into header lines. A table is
//! rendered once per minted token ([`RenderCache`]), not per request.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::mapping::{ClaimMapper, PATH_SUFFIX, quote_key};

/// The longest header value sent, in bytes after encoding. A longer one is left out (and
/// logged): 8 KiB is what many servers accept for a whole header line (nginx's
/// `large_client_header_buffers` default).
pub const MAX_HEADER_VALUE_BYTES: usize = 8 * 1024;

/// The most headers one table may set.
pub const MAX_HEADERS_PER_TABLE: usize = 64;

/// How many tables' renderings one token keeps ([`RenderCache`]); a token used under more
/// (many routes of one service, each with its own table) renders the others per request.
const CACHED_TABLES: usize = 4;

/// Names a table may not set: baton's own (`authorization`), the ones that frame the
/// message or describe one hop (RFC 9110 §7.6.1), and the ones baton sets itself.
const RESERVED_NAMES: [&str; 12] = [
    "authorization",
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Tables get a number no other table of this process has, so a rendering cached with a
/// token is never taken for another table's (a reload builds new tables).
static NEXT_TABLE_ID: AtomicU64 = AtomicU64::new(1);

/// A compiled `headers` table.
#[derive(Clone)]
pub struct HeaderTable {
    id: u64,
    /// The header names, lower-case, in the order of [`HeaderTable::render`]'s output.
    names: Vec<Arc<str>>,
    mapper: ClaimMapper,
}

/// One entry of a table that could not be compiled: its key (quoted as in a config path)
/// and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", match .key { Some(key) => format!("{key}: "), None => String::new() })]
pub struct HeaderTableError {
    /// The table's key, quoted when it holds a dot; `None` for the table as a whole.
    pub key: Option<String>,
    /// What is wrong.
    pub reason: String,
}

/// One claim header: its name and its encoded value.
pub type ClaimHeader = (Arc<str>, Bytes);

/// The headers a table gives for one payload, in table order.
pub type Rendered = Arc<[ClaimHeader]>;

/// One token's renderings, per table, made on first need and kept with the token.
#[derive(Default)]
pub struct RenderCache {
    slots: [OnceLock<(u64, Rendered)>; CACHED_TABLES],
}

// === impl HeaderTable ===

impl HeaderTable {
    /// Compiles a `headers` table, reporting every bad entry.
    pub fn compile(table: &Map<String, Value>) -> Result<Self, Vec<HeaderTableError>> {
        let mut errors = Vec::new();
        let mut names: Vec<Arc<str>> = Vec::new();
        let mut accepted = Map::new();
        if table.len() > MAX_HEADERS_PER_TABLE {
            errors.push(HeaderTableError {
                key: None,
                reason: format!("at most {MAX_HEADERS_PER_TABLE} headers"),
            });
        }
        for (key, value) in table {
            let refuse = |errors: &mut Vec<_>, reason: String| {
                errors.push(HeaderTableError {
                    key: Some(quote_key(key)),
                    reason,
                });
            };
            let name = key.strip_suffix(PATH_SUFFIX).unwrap_or(key);
            if let Err(reason) = check_name(name) {
                refuse(&mut errors, reason);
                continue;
            }
            if names.iter().any(|seen| &**seen == name) {
                refuse(&mut errors, format!("`{name}` is set twice"));
                continue;
            }
            if key.ends_with(PATH_SUFFIX) {
                if !value.is_string() {
                    refuse(
                        &mut errors,
                        "a key ending in `.$` needs a JSONPath string".into(),
                    );
                    continue;
                }
            } else if !matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                refuse(
                    &mut errors,
                    "a literal value must be a string, a number or a boolean (or use \
                     `name.$` = \"<JSONPath>\")"
                        .into(),
                );
                continue;
            }
            names.push(Arc::from(name));
            accepted.insert(key.clone(), value.clone());
        }
        // The paths' own bounds and errors are the mappings' (same syntax, same limits),
        // reported along with the names' (every error of a file at once).
        let mapper = ClaimMapper::compile(&accepted).unwrap_or_else(|mapping_errors| {
            errors.extend(mapping_errors.into_iter().map(|e| HeaderTableError {
                key: e.key_path.first().cloned(),
                reason: e.reason,
            }));
            ClaimMapper::empty()
        });
        if !errors.is_empty() {
            return Err(errors);
        }
        // The mapper's output is keyed by name in sorted order: render in that order.
        names.sort();
        Ok(Self {
            id: NEXT_TABLE_ID.fetch_add(1, Ordering::Relaxed),
            names,
            mapper,
        })
    }

    /// The names this table sets (which the proxy always removes from a client's request).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|name| &**name)
    }

    /// The table as written (for listing it back).
    pub fn to_json(&self) -> Map<String, Value> {
        self.mapper.to_json()
    }

    /// The headers for `payload`, each value rendered and encoded. A header whose path finds
    /// nothing, whose value is `null`, or whose encoded value is too long is left out; the
    /// names of those too long are in the second list (for the log: never their values).
    pub fn render(&self, payload: &Value) -> (Vec<ClaimHeader>, Vec<Arc<str>>) {
        let mut headers = Vec::with_capacity(self.names.len());
        let mut too_long = Vec::new();
        // A payload is baton's own minted claims, already bounded by the provider mapping;
        // should a table's paths still produce too many values, no header is sent.
        let Ok(values) = self.mapper.apply(payload) else {
            return (headers, self.names.clone());
        };
        for name in &self.names {
            let Some(value) = values.get(&**name) else {
                continue;
            };
            let Some(text) = render_value(value) else {
                continue;
            };
            let encoded = encode(&text);
            if encoded.len() > MAX_HEADER_VALUE_BYTES {
                too_long.push(Arc::clone(name));
                continue;
            }
            headers.push((Arc::clone(name), Bytes::from(encoded)));
        }
        (headers, too_long)
    }
}

impl fmt::Debug for HeaderTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderTable")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl PartialEq for HeaderTable {
    fn eq(&self, other: &Self) -> bool {
        self.names == other.names && self.mapper.to_json() == other.mapper.to_json()
    }
}

// === impl RenderCache ===

impl RenderCache {
    /// `table`'s headers for `payload`, rendered on first need and then kept. `log` hears
    /// of each header left out for its length, once per rendering.
    pub fn rendered(&self, table: &HeaderTable, payload: &Value, log: impl Fn(&str)) -> Rendered {
        let render = || {
            let (headers, too_long) = table.render(payload);
            too_long.iter().for_each(|name| log(name));
            Rendered::from(headers)
        };
        for slot in &self.slots {
            // An empty slot is claimed for this table; a slot another table (or a racing
            // thread for another table) holds is passed over.
            let (id, rendered) = slot.get_or_init(|| (table.id, render()));
            if *id == table.id {
                return Arc::clone(rendered);
            }
        }
        render()
    }
}

impl fmt::Debug for RenderCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cached = self
            .slots
            .iter()
            .filter(|slot| slot.get().is_some())
            .count();
        f.debug_struct("RenderCache")
            .field("cached", &cached)
            .finish()
    }
}

/// Checks a header name: lower-case token characters (RFC 9110 §5.6.2), and none baton
/// owns or a hop owns.
pub fn check_name(name: &str) -> Result<(), String> {
    let token =
        |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() {
        return Err("a header name is needed".into());
    }
    if !name.bytes().all(token) {
        return Err(format!(
            "`{}` is not a lower-case header name (letters a-z, digits and !#$%&'*+-.^_`|~)",
            name.escape_default()
        ));
    }
    if RESERVED_NAMES.contains(&name) || name.starts_with("x-forwarded-") {
        return Err(format!(
            "`{name}` is set by baton or describes one hop; it cannot be a claim header"
        ));
    }
    Ok(())
}

/// A claim value as header text: a string as it is, a number or boolean as JSON text, an
/// array's elements rendered likewise (a nested array or object as JSON, `null` as `null`)
/// and joined with `,`, an object as JSON. `null` is no value (`None`).
pub fn render_value(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        Value::Array(items) => {
            let mut joined = String::new();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    joined.push(',');
                }
                match item {
                    Value::String(text) => joined.push_str(text),
                    other => joined.push_str(&other.to_string()),
                }
            }
            Some(joined)
        }
        other => Some(other.to_string()),
    }
}

/// Percent-encodes every byte that is not visible ASCII (0x21–0x7E) or an inner space, and
/// `%` itself (so [`decode`] gives the text back exactly). A leading or trailing space is
/// encoded too: HTTP parsers strip it from a field value (RFC 9110 §5.5).
pub fn encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = text.as_bytes();
    let mut encoded = String::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        let edge = i == 0 || i + 1 == bytes.len();
        let plain = (0x21..=0x7E).contains(&b) && b != b'%' || (b == b' ' && !edge);
        if plain {
            encoded.push(char::from(b));
        } else {
            encoded.push('%');
            encoded.push(char::from(HEX[usize::from(b >> 4)]));
            encoded.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
    encoded
}

/// Undoes [`encode`] (what an app does to read a claim header): `None` for a malformed
/// escape.
pub fn decode(encoded: &str) -> Option<Vec<u8>> {
    let bytes = encoded.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            // Two hex digits exactly (`from_str_radix` alone would take a sign).
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let digits = std::str::from_utf8(hex).ok()?;
            decoded.push(u8::from_str_radix(digits, 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    Some(decoded)
}

#[cfg(test)]
mod tests;
