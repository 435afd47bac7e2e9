//! Claim mappings: JSON templates whose `.$` keys are JSONPath queries.
//!
//! A mapping's shape is its output's shape (State Backed's format):
//! - a key ending in `.$` holds a JSONPath (RFC 9535) evaluated against the input; the
//!   output key drops the `.$`. No node leaves the key out, one node gives its value,
//!   several give an array of their values;
//! - any other key is a constant, unless its value is an object, which is a nested mapping.
//!
//! Paths are compiled once, by [`ClaimMapper::compile`], when the config is loaded.

use serde_json::{Map, Value};
use serde_json_path::JsonPath;

mod bounds;

pub use bounds::{MAX_DESCENDANT_SEGMENTS, MAX_PATH_BYTES, MAX_PATH_FANOUT, MAX_PATH_NESTING};

/// The suffix that marks a JSONPath key.
pub const PATH_SUFFIX: &str = ".$";

/// The most entries in one mapping: its keys at every level plus the values inside its
/// constants. Real mappings have a dozen.
pub const MAX_MAPPING_ENTRIES: usize = 256;

/// The most bytes of JSONPath in one mapping, all paths together: bounds the time to
/// compile a mapping (a path of the worst shape allowed parses in ~10 ms) as
/// [`MAX_PATH_BYTES`] bounds one path's. Real mappings hold a few hundred.
pub const MAX_MAPPING_PATH_BYTES: usize = 4096;

/// The deepest nesting of objects in a mapping (`{ "a": { "b": … } }` is 2).
pub const MAX_MAPPING_DEPTH: usize = 8;

/// The most evaluation steps all of one mapping's JSONPaths may cost together: one step is
/// a pass over the token's values (see `bounds`). `$.sub` costs 0, `$.roles[*]` 1,
/// `$.groups[?@ == 'admin']` 2. Bounds the work of one exchange, whatever the token.
pub const MAX_MAPPING_COST: u32 = 8;

/// The most JSON values a mapping's output may hold, counting constants: as many as a
/// subject token may hold, so the next mapping's input is bounded like a token.
pub const MAX_MAPPED_VALUES: usize = crate::token::MAX_CLAIM_VALUES;

/// A compiled mapping.
#[derive(Clone, Debug)]
pub struct ClaimMapper {
    entries: Vec<(String, Rule)>,
}

#[derive(Clone, Debug)]
enum Rule {
    Constant(Value),
    /// The compiled path and the text it was compiled from: the library's `Display` does not
    /// give the source back (`$..a` prints as `$...a`), and a listed mapping must compile again.
    Path(JsonPath, Box<str>),
    Nested(ClaimMapper),
}

/// A mapping that could not be compiled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct MappingError {
    /// The keys leading to the bad entry, each quoted when it holds a dot; empty when the
    /// mapping as a whole is refused.
    pub key_path: Vec<String>,
    /// What is wrong with it.
    pub reason: String,
}

/// Applying a mapping would produce more than [`MAX_MAPPED_VALUES`] values: the token's
/// claims are refused, as a malformed token would be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the mapped claims would hold more than {MAX_MAPPED_VALUES} values")]
pub struct MappedClaimsTooLarge;

/// What a whole mapping adds up to while it compiles.
#[derive(Debug, Default)]
struct Totals {
    entries: usize,
    path_bytes: usize,
    cost: u32,
}

// === impl MappingError ===

impl std::fmt::Display for MappingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key_path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.key_path.join("."), self.reason)
        }
    }
}

// === impl ClaimMapper ===

impl ClaimMapper {
    /// Compiles a mapping object, reporting every bad entry.
    pub fn compile(mapping: &Map<String, Value>) -> Result<Self, Vec<MappingError>> {
        let mut errors = Vec::new();
        let mut totals = Totals::default();
        let mapper = Self::compile_into(mapping, &mut Vec::new(), &mut totals, &mut errors);
        if totals.entries > MAX_MAPPING_ENTRIES {
            refuse(
                &mut errors,
                &[],
                format!(
                    "the mapping has {} entries (keys and values inside constants); at most \
                     {MAX_MAPPING_ENTRIES} are allowed",
                    totals.entries
                ),
            );
        }
        if totals.path_bytes > MAX_MAPPING_PATH_BYTES {
            refuse(
                &mut errors,
                &[],
                format!(
                    "the mapping's JSONPaths are {} bytes long together; at most \
                     {MAX_MAPPING_PATH_BYTES} are allowed",
                    totals.path_bytes
                ),
            );
        }
        if totals.cost > MAX_MAPPING_COST {
            refuse(
                &mut errors,
                &[],
                format!(
                    "the mapping's JSONPaths cost {} evaluation steps together; at most \
                     {MAX_MAPPING_COST} are allowed (a wildcard, slice or `..` costs one, and \
                     each query, segment or function in a filter one more)",
                    totals.cost
                ),
            );
        }
        if errors.is_empty() {
            Ok(mapper)
        } else {
            Err(errors)
        }
    }

    fn compile_into(
        mapping: &Map<String, Value>,
        prefix: &mut Vec<String>,
        totals: &mut Totals,
        errors: &mut Vec<MappingError>,
    ) -> Self {
        let mut entries = Vec::with_capacity(mapping.len());
        for (key, value) in mapping {
            prefix.push(quote_key(key));
            totals.entries += 1;
            if let Some(output_key) = key.strip_suffix(PATH_SUFFIX) {
                let text = value.as_str();
                // Only paths within their own bound would be parsed; once those pass the
                // mapping's bound nothing more is (the mapping is refused below).
                let parsed_bytes = text.map_or(0, str::len);
                if parsed_bytes <= MAX_PATH_BYTES {
                    totals.path_bytes += parsed_bytes;
                }
                let compiled = text
                    .filter(|t| {
                        t.len() > MAX_PATH_BYTES || totals.path_bytes <= MAX_MAPPING_PATH_BYTES
                    })
                    .map(compile_path);
                match compiled {
                    Some(Ok((path, cost))) => {
                        totals.cost = totals.cost.saturating_add(cost);
                        let source = text.unwrap_or_default().into();
                        entries.push((output_key.to_owned(), Rule::Path(path, source)));
                    }
                    Some(Err(reason)) => refuse(errors, prefix, reason),
                    None if text.is_some() => {}
                    None => refuse(
                        errors,
                        prefix,
                        "a key ending in `.$` needs a JSONPath string".to_owned(),
                    ),
                }
            } else if let Value::Object(nested) = value {
                if prefix.len() >= MAX_MAPPING_DEPTH {
                    let reason = format!(
                        "the mapping nests objects more than {MAX_MAPPING_DEPTH} levels deep"
                    );
                    refuse(errors, prefix, reason);
                } else {
                    let nested = Self::compile_into(nested, prefix, totals, errors);
                    entries.push((key.clone(), Rule::Nested(nested)));
                }
            } else {
                // Bounded by the first value past the limit: the total is only compared.
                let inside = count_values(value, MAX_MAPPING_ENTRIES + 1).saturating_sub(1);
                totals.entries = totals.entries.saturating_add(inside);
                entries.push((key.clone(), Rule::Constant(value.clone())));
            }
            prefix.pop();
        }
        Self { entries }
    }

    /// Applies the mapping to `input`, refusing to produce more than [`MAX_MAPPED_VALUES`]
    /// values (a token whose values overlap, like nested `roles` picked by `$..roles`,
    /// could otherwise be copied many times over).
    pub fn apply(&self, input: &Value) -> Result<Map<String, Value>, MappedClaimsTooLarge> {
        let mut budget = MAX_MAPPED_VALUES;
        self.apply_within(input, &mut budget)
    }

    fn apply_within(
        &self,
        input: &Value,
        budget: &mut usize,
    ) -> Result<Map<String, Value>, MappedClaimsTooLarge> {
        let mut output = Map::new();
        for (key, rule) in &self.entries {
            let value = match rule {
                Rule::Constant(value) => copy_within(value, budget)?,
                Rule::Nested(nested) => {
                    spend(1, budget)?;
                    Value::Object(nested.apply_within(input, budget)?)
                }
                Rule::Path(path, _) => {
                    let nodes = path.query(input).all();
                    match nodes.as_slice() {
                        [] => continue,
                        [one] => copy_within(one, budget)?,
                        many => {
                            spend(1, budget)?;
                            Value::Array(
                                many.iter()
                                    .map(|v| copy_within(v, budget))
                                    .collect::<Result<_, _>>()?,
                            )
                        }
                    }
                }
            };
            output.insert(key.clone(), value);
        }
        Ok(output)
    }

    /// The mapping object this was compiled from (for listing it back).
    pub fn to_json(&self) -> Map<String, Value> {
        self.entries
            .iter()
            .map(|(key, rule)| match rule {
                Rule::Constant(value) => (key.clone(), value.clone()),
                Rule::Path(_, source) => (
                    format!("{key}{PATH_SUFFIX}"),
                    Value::String(source.to_string()),
                ),
                Rule::Nested(nested) => (key.clone(), Value::Object(nested.to_json())),
            })
            .collect()
    }

    /// A mapping that produces nothing.
    pub fn empty() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

fn refuse(errors: &mut Vec<MappingError>, prefix: &[String], reason: String) {
    errors.push(MappingError {
        key_path: prefix.to_vec(),
        reason,
    });
}

/// Compiles one JSONPath within the bounds, giving its cost.
fn compile_path(text: &str) -> Result<(JsonPath, u32), String> {
    // Size first: the parser recurses per nesting level and backtracks per filter.
    bounds::check_size(text)?;
    // The parser is a third party's, and a panic in it (one was found by fuzzing, see
    // bounds::check_unicode_escapes) must be a config error, never a crashed reload or admin
    // write. `text` is only read, so nothing is left half-changed by an unwind.
    let parsed = std::panic::catch_unwind(|| JsonPath::parse(text))
        .map_err(|_| "invalid JSONPath: the JSONPath parser failed on it".to_owned())?;
    let path = parsed.map_err(|e| format!("invalid JSONPath: {e}"))?;
    let cost = bounds::cost(text)?;
    if cost > MAX_MAPPING_COST {
        return Err(format!(
            "the JSONPath costs {cost} evaluation steps; at most {MAX_MAPPING_COST} are allowed"
        ));
    }
    Ok((path, cost))
}

/// Clones `value` if the budget has room for all of its values.
fn copy_within(value: &Value, budget: &mut usize) -> Result<Value, MappedClaimsTooLarge> {
    spend(count_values(value, *budget + 1), budget)?;
    Ok(value.clone())
}

fn spend(values: usize, budget: &mut usize) -> Result<(), MappedClaimsTooLarge> {
    *budget = budget.checked_sub(values).ok_or(MappedClaimsTooLarge)?;
    Ok(())
}

/// The number of JSON values in `value` (itself included), counting no further than
/// `limit`.
pub fn count_values(value: &Value, limit: usize) -> usize {
    fn walk(value: &Value, count: &mut usize, limit: usize) {
        *count += 1;
        let mut visit = |child: &Value| {
            if *count < limit {
                walk(child, count, limit);
            }
        };
        match value {
            Value::Array(items) => items.iter().for_each(&mut visit),
            Value::Object(members) => members.values().for_each(&mut visit),
            _ => {}
        }
    }
    let mut count = 0;
    walk(value, &mut count, limit);
    count.min(limit)
}

/// Quotes a mapping key for an error path when it is not a bare identifier: `"role.$"`.
pub fn quote_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

#[cfg(test)]
mod tests;
