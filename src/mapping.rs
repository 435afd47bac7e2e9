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

/// The suffix that marks a JSONPath key.
pub const PATH_SUFFIX: &str = ".$";

/// A compiled mapping.
#[derive(Clone, Debug)]
pub struct ClaimMapper {
    entries: Vec<(String, Rule)>,
}

#[derive(Clone, Debug)]
enum Rule {
    Constant(Value),
    Path(JsonPath),
    Nested(ClaimMapper),
}

/// A mapping that could not be compiled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", key_path.join("."))]
pub struct MappingError {
    /// The keys leading to the bad entry, each quoted when it holds a dot.
    pub key_path: Vec<String>,
    /// What is wrong with it.
    pub reason: String,
}

// === impl ClaimMapper ===

impl ClaimMapper {
    /// Compiles a mapping object, reporting every bad entry.
    pub fn compile(mapping: &Map<String, Value>) -> Result<Self, Vec<MappingError>> {
        let mut errors = Vec::new();
        let mapper = Self::compile_into(mapping, &mut Vec::new(), &mut errors);
        if errors.is_empty() {
            Ok(mapper)
        } else {
            Err(errors)
        }
    }

    fn compile_into(
        mapping: &Map<String, Value>,
        prefix: &mut Vec<String>,
        errors: &mut Vec<MappingError>,
    ) -> Self {
        let mut entries = Vec::with_capacity(mapping.len());
        for (key, value) in mapping {
            prefix.push(quote_key(key));
            if let Some(output_key) = key.strip_suffix(PATH_SUFFIX) {
                match value.as_str().map(JsonPath::parse) {
                    Some(Ok(path)) => entries.push((output_key.to_owned(), Rule::Path(path))),
                    Some(Err(e)) => errors.push(MappingError {
                        key_path: prefix.clone(),
                        reason: format!("invalid JSONPath: {e}"),
                    }),
                    None => errors.push(MappingError {
                        key_path: prefix.clone(),
                        reason: "a key ending in `.$` needs a JSONPath string".to_owned(),
                    }),
                }
            } else if let Value::Object(nested) = value {
                let nested = Self::compile_into(nested, prefix, errors);
                entries.push((key.clone(), Rule::Nested(nested)));
            } else {
                entries.push((key.clone(), Rule::Constant(value.clone())));
            }
            prefix.pop();
        }
        Self { entries }
    }

    /// Applies the mapping to `input`.
    pub fn apply(&self, input: &Value) -> Map<String, Value> {
        let mut output = Map::new();
        for (key, rule) in &self.entries {
            let value = match rule {
                Rule::Constant(value) => value.clone(),
                Rule::Nested(nested) => Value::Object(nested.apply(input)),
                Rule::Path(path) => {
                    let nodes = path.query(input).all();
                    match nodes.as_slice() {
                        [] => continue,
                        [one] => (*one).clone(),
                        many => Value::Array(many.iter().map(|v| (*v).clone()).collect()),
                    }
                }
            };
            output.insert(key.clone(), value);
        }
        output
    }

    /// The mapping object this was compiled from (for listing it back).
    pub fn to_json(&self) -> Map<String, Value> {
        self.entries
            .iter()
            .map(|(key, rule)| match rule {
                Rule::Constant(value) => (key.clone(), value.clone()),
                Rule::Path(path) => (
                    format!("{key}{PATH_SUFFIX}"),
                    Value::String(path.to_string()),
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
