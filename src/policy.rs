//! Conditions: who gets which token, as [CEL](https://cel.dev) expressions compiled when the
//! config loads (or an admin write arrives) and evaluated per exchange or per request.
//!
//! Three places hold one (DESIGN "Policy"), each with its own variables ([`Scope`]):
//! `[[idps]]` over the verified token's `claims`; `[[token_providers]]` over the intermediate
//! `claims`, `idp`, `client` and `actor`; `[[proxy.routes]]` over the minted token's `claims`
//! and `request` (`method`, `path`, `headers`).
//!
//! The `cel` crate has no type checker, so what a checker would refuse is checked here on the
//! parsed expression: every free variable must be one of the scope's, and the expression's
//! outermost form must be able to yield a bool (a comparison, a logical operator, a
//! predicate such as `startsWith` or `exists`, a bool literal, a variable or field, a
//! conditional of those) — `claims.n + 1` or `"yes"` is a config error. What only the claims
//! decide (`claims.email_verified` holding a string) is an evaluation error at run time, and
//! that is a refusal, never a pass.
//!
//! Bounded, so that neither a config nor an admin write makes compiling or evaluating
//! expensive: at most [`MAX_CONDITION_BYTES`] of source, [`MAX_NESTING`] levels of nesting
//! (the parser's recursion and the expression tree's depth: both evaluating and dropping a
//! tree recurse), and no comprehension (`all`, `exists`, `map`, …) inside another's body, so
//! evaluation is linear in the claims' size. The crate's `regex` and `chrono` features are off:
//! `matches` would compile its pattern on every evaluation, and conditions have no use for
//! time (`exp` and `nbf` are checked by the verifier).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, LazyLock, OnceLock};

use cel::common::ast::{EntryExpr, Expr, LiteralValue};
use cel::common::types::{CelNull, CelString};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, Env, IdedExpr, Value};
use serde::Serialize;

/// The longest condition accepted, in bytes (Google's STS allows 4 096 characters for an
/// attribute condition).
pub const MAX_CONDITION_BYTES: usize = 4096;

/// The deepest nesting accepted: of the parser's rules and of the expression tree.
pub const MAX_NESTING: usize = 32;

/// The stack of the thread a condition is compiled on: eight times what the longest source
/// was measured to need (virtual memory: only what the parser touches is ever mapped).
const COMPILE_STACK_BYTES: usize = 64 << 20;

/// The environment every condition is parsed and evaluated with: CEL's standard library.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// Where a condition stands, which decides the variables it may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `[[idps]] condition`: `claims` of the verified subject token.
    Idp,
    /// `[[token_providers]] condition`: the intermediate `claims`, `idp`, `client`, `actor`.
    Provider,
    /// `[[proxy.routes]] condition`: the minted token's `claims`, and `request`.
    Route,
}

impl Scope {
    /// The variables an expression in this scope may name.
    pub fn variables(self) -> &'static [&'static str] {
        match self {
            Self::Idp => &["claims"],
            Self::Provider => &["claims", "idp", "client", "actor"],
            Self::Route => &["claims", "request"],
        }
    }
}

/// A compiled condition. Cloning shares the compiled expression.
#[derive(Clone)]
pub struct Condition {
    compiled: Arc<Compiled>,
}

struct Compiled {
    source: String,
    expression: IdedExpr,
    /// Whether the expression reads `request.headers` (the proxy builds that map only then).
    reads_headers: bool,
    /// The claims it reads by name (`claims.a.b` as `["a", "b"]`), for `baton explain`.
    claim_paths: Vec<Vec<String>>,
}

/// Why a condition could not be compiled: a message for the config error or the admin API's
/// 400, which names the problem (never claim values: there are none at compile time).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConditionError(String);

/// Why a condition could not decide: the expression failed on these inputs (a missing field,
/// a type mismatch, a result that is not a bool). The caller refuses, as if it were false;
/// the detail is for the operator's logs and `baton explain`, and names no claim value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Undecided(String);

/// Claims converted once for evaluation (a cached minted token keeps its own, so a route
/// condition on a cache hit does not convert them again).
pub struct Claims(Box<dyn Val>);

/// The facts of a proxied request a route condition may read. (`Debug` names the headers but
/// shows none of their values.)
#[derive(Clone, Serialize)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// The normalized path, without the query.
    pub path: &'a str,
    /// Lower-case names; repeated fields joined with `,`. Empty unless the condition reads it
    /// ([`Condition::reads_headers`]).
    pub headers: BTreeMap<String, String>,
}

/// What one evaluation sees; absent variables are `null`. (`Debug` shows no claim value.)
#[derive(Debug, Default)]
pub struct Inputs<'a> {
    pub claims: Option<&'a Claims>,
    pub idp: Option<&'a str>,
    pub client: Option<&'a str>,
    /// The actor's intermediate claims (delegation, RFC 8693 `actor_token`); `null` without.
    pub actor: Option<&'a Claims>,
    pub request: Option<&'a RequestFacts<'a>>,
}

// === impl Condition ===

impl Condition {
    /// Compiles `source` for `scope`, or says why it is not a condition there.
    pub fn compile(source: &str, scope: Scope) -> Result<Self, ConditionError> {
        if source.len() > MAX_CONDITION_BYTES {
            return Err(ConditionError(format!(
                "is longer than {MAX_CONDITION_BYTES} bytes"
            )));
        }
        if source.trim().is_empty() {
            return Err(ConditionError("is empty".into()));
        }
        // The parser recurses once per operator of a chain (`a + a + …`, `a.b.c…`) before any
        // limit applies, and so do checking and dropping the tree it builds: a source of
        // MAX_CONDITION_BYTES needs up to ~8 MiB of stack in a debug build, ~1 MiB optimized.
        // Compiling on a thread of its own with room to spare keeps a caller's stack (a
        // runtime worker's 2 MiB) safe whatever the source.
        std::thread::scope(|threads| {
            std::thread::Builder::new()
                .name("baton-condition".into())
                .stack_size(COMPILE_STACK_BYTES)
                .spawn_scoped(threads, || compile_here(source, scope))
                .map_err(|e| ConditionError(format!("could not be compiled: {e}")))?
                .join()
                .unwrap_or_else(|_| Err(ConditionError("could not be compiled".into())))
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.compiled.source
    }

    /// Whether the expression reads `request.headers`.
    pub fn reads_headers(&self) -> bool {
        self.compiled.reads_headers
    }

    /// The claims the expression reads by name, in the order written, each once:
    /// `claims.a.b` as `["a", "b"]` (for `baton explain`, which shows their values; a claim
    /// read by index or inside a comprehension is not listed).
    pub fn claim_paths(&self) -> &[Vec<String>] {
        &self.compiled.claim_paths
    }

    /// Evaluates the condition: `Ok(true)` lets the request or exchange through.
    pub fn evaluate(&self, inputs: &Inputs<'_>) -> Result<bool, Undecided> {
        let variables = Variables {
            inputs,
            request: OnceLock::new(),
            headers: OnceLock::new(),
        };
        let mut context = Context::with_env(Arc::clone(&ENV));
        context.set_variable_resolver(&variables);
        match context.resolve(&self.compiled.expression) {
            Ok(Value::Bool(result)) => Ok(result),
            Ok(other) => Err(Undecided(format!(
                "the condition returned a {:?}, not a bool",
                other.type_of()
            ))),
            Err(error) => Err(Undecided(describe(&error))),
        }
    }
}

/// Parses and checks `source` on the current thread (see [`Condition::compile`]).
fn compile_here(source: &str, scope: Scope) -> Result<Condition, ConditionError> {
    let parser = ENV.parser().max_recursion_depth(MAX_NESTING as u16);
    let expression = parser.parse(source).map_err(|errors| {
        // The first line names the problem and its place; the rest repeats the source.
        let text = errors.to_string();
        let first = text.lines().next().unwrap_or("syntax error").trim();
        ConditionError(format!(
            "does not parse: {}",
            first.trim_start_matches("ERROR: ")
        ))
    })?;
    let mut check = Check {
        scope,
        bound: Vec::new(),
        reads_headers: false,
        claim_paths: Vec::new(),
    };
    check.expression(&expression, 1, 0)?;
    if !may_yield_bool(&expression) {
        return Err(ConditionError(
            "does not return a bool (write a comparison, e.g. `claims.hd == \"example.com\"`)"
                .into(),
        ));
    }
    Ok(Condition {
        compiled: Arc::new(Compiled {
            source: source.to_owned(),
            reads_headers: check.reads_headers,
            claim_paths: check.claim_paths,
            expression,
        }),
    })
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Condition")
            .field(&self.compiled.source)
            .finish()
    }
}

impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.compiled.source == other.compiled.source
    }
}

// === impl Claims ===

impl Claims {
    /// Converts a claims object (or any JSON value) for evaluation.
    pub fn from_json(claims: &serde_json::Value) -> Result<Self, Undecided> {
        to_val(claims).map(Self).map_err(Undecided)
    }
}

impl fmt::Debug for RequestFacts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestFacts")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl fmt::Debug for Claims {
    // Claim values are personal data: never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Claims(..)")
    }
}

/// Serializes a value into CEL's own representation.
fn to_val(value: &impl Serialize) -> Result<Box<dyn Val>, String> {
    let value = cel::to_value(value).map_err(|e| format!("the inputs do not convert: {e}"))?;
    Box::<dyn Val>::try_from(value).map_err(|e| format!("the inputs do not convert: {e:?}"))
}

/// An evaluation error in words that name the problem but no value (CEL's own messages quote
/// operands, which may be claim values).
fn describe(error: &cel::ExecutionError) -> String {
    use cel::ExecutionError as E;
    match error {
        E::NoSuchKey(key) => format!("no field `{key}`"),
        E::UndeclaredReference(name) => format!("`{name}` is not set"),
        E::UnsupportedBinaryOperator(op, ..) => format!("`{op}` does not apply to these types"),
        E::NoSuchOverload(_) => "no function applies to these types".into(),
        E::UnexpectedType { got, want } => format!("a {got} where a {want} is needed"),
        _ => "the condition could not be evaluated on these inputs".into(),
    }
}

/// The variables of one evaluation, resolved as the expression names them. CEL resolves a
/// qualified name longest first (`request.method` before `request`), so the request's method
/// and path are answered without building the request's map; that map, and the headers',
/// are built only when an expression reads them whole.
struct Variables<'a> {
    inputs: &'a Inputs<'a>,
    request: OnceLock<Option<Box<dyn Val>>>,
    headers: OnceLock<Option<Box<dyn Val>>>,
}

impl VariableResolver for Variables<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let text = |value: Option<&'b str>| -> CowVal<'b, 'b> {
            match value {
                Some(text) => CowVal::owned(CelString::from(text)),
                None => CowVal::owned(CelNull),
            }
        };
        let built = |cell: &'b OnceLock<Option<Box<dyn Val>>>,
                     build: &dyn Fn() -> Option<Box<dyn Val>>| {
            cell.get_or_init(build).as_deref().map(CowVal::Borrowed)
        };
        let request = self.inputs.request;
        match variable {
            "claims" => Some(match self.inputs.claims {
                Some(claims) => CowVal::Borrowed(claims.0.as_ref()),
                None => CowVal::owned(CelNull),
            }),
            "request.method" => request.map(|facts| text(Some(facts.method))),
            "request.path" => request.map(|facts| text(Some(facts.path))),
            "request.headers" => {
                let facts = request?;
                built(&self.headers, &|| to_val(&facts.headers).ok())
            }
            "request" => match request {
                Some(facts) => built(&self.request, &|| to_val(facts).ok()),
                None => Some(CowVal::owned(CelNull)),
            },
            "idp" => Some(text(self.inputs.idp)),
            "client" => Some(text(self.inputs.client)),
            "actor" => Some(match self.inputs.actor {
                Some(actor) => CowVal::Borrowed(actor.0.as_ref()),
                None => CowVal::owned(CelNull),
            }),
            _ => None,
        }
    }
}

/// The checks a type checker would make, and the bounds.
struct Check {
    scope: Scope,
    /// Names bound by the comprehensions around the node being checked.
    bound: Vec<String>,
    reads_headers: bool,
    claim_paths: Vec<Vec<String>>,
}

impl Check {
    fn expression(
        &mut self,
        node: &IdedExpr,
        depth: usize,
        comprehensions: usize,
    ) -> Result<(), ConditionError> {
        if depth > MAX_NESTING {
            return Err(ConditionError(format!(
                "nests deeper than {MAX_NESTING} levels"
            )));
        }
        let next = depth + 1;
        match &node.expr {
            Expr::Ident(name) => {
                if !self.bound.iter().any(|bound| bound == name)
                    && !self.scope.variables().contains(&name.as_str())
                {
                    return Err(ConditionError(format!(
                        "names `{name}`, which is not a variable here (these are: {})",
                        self.scope.variables().join(", ")
                    )));
                }
            }
            Expr::Select(select) => {
                if select.field == "headers"
                    && matches!(&select.operand.expr, Expr::Ident(name) if name == "request")
                {
                    self.reads_headers = true;
                }
                if let Some(path) = self.claim_path(node) {
                    // A chain of fields down to `claims`: nothing more to check in it than
                    // its depth (one level per field, as the recursion would count).
                    if depth + path.len() > MAX_NESTING {
                        return Err(ConditionError(format!(
                            "nests deeper than {MAX_NESTING} levels"
                        )));
                    }
                    if !self.claim_paths.contains(&path) {
                        self.claim_paths.push(path);
                    }
                    return Ok(());
                }
                self.expression(&select.operand, next, comprehensions)?;
            }
            Expr::Call(call) => {
                if let Some(target) = &call.target {
                    self.expression(target, next, comprehensions)?;
                }
                for arg in &call.args {
                    self.expression(arg, next, comprehensions)?;
                }
            }
            Expr::List(list) => {
                for element in &list.elements {
                    self.expression(element, next, comprehensions)?;
                }
            }
            Expr::Map(map) => {
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(entry) = &entry.expr {
                        self.expression(&entry.key, next, comprehensions)?;
                        self.expression(&entry.value, next, comprehensions)?;
                    }
                }
            }
            Expr::Struct(_) => {
                return Err(ConditionError(
                    "builds a message type, which baton has none of".into(),
                ));
            }
            Expr::Comprehension(comprehension) => {
                if comprehensions > 0 {
                    return Err(ConditionError(
                        "has a comprehension (all, exists, map, filter…) inside another's body"
                            .into(),
                    ));
                }
                // The range is evaluated once, outside the loop.
                self.expression(&comprehension.iter_range, next, comprehensions)?;
                self.expression(&comprehension.accu_init, next, comprehensions)?;
                let names = [
                    Some(&comprehension.iter_var),
                    comprehension.iter_var2.as_ref(),
                    Some(&comprehension.accu_var),
                ];
                let before = self.bound.len();
                self.bound.extend(names.into_iter().flatten().cloned());
                let body = [
                    &comprehension.loop_cond,
                    &comprehension.loop_step,
                    &comprehension.result,
                ];
                let checked = body
                    .into_iter()
                    .try_for_each(|part| self.expression(part, next, comprehensions + 1));
                self.bound.truncate(before);
                checked?;
            }
            Expr::Literal(_) | Expr::Unspecified => {}
        }
        Ok(())
    }
}

impl Check {
    /// `claims.a.b…` (with `claims` the scope's variable, not a comprehension's name) as
    /// `["a", "b", …]`; `None` for any other expression.
    fn claim_path(&self, node: &IdedExpr) -> Option<Vec<String>> {
        let mut fields = Vec::new();
        let mut at = node;
        loop {
            match &at.expr {
                Expr::Select(select) if !select.test => {
                    fields.push(select.field.clone());
                    at = &select.operand;
                }
                Expr::Ident(name)
                    if name == "claims" && !self.bound.iter().any(|bound| bound == name) =>
                {
                    fields.reverse();
                    return Some(fields);
                }
                _ => return None,
            }
        }
    }
}

/// Whether an expression of this form can evaluate to a bool (what a type checker's "the
/// result is not bool" would refuse, for the forms whose type is known without the claims).
fn may_yield_bool(node: &IdedExpr) -> bool {
    use cel::common::ast::operators as op;
    match &node.expr {
        Expr::Literal(LiteralValue::Boolean(_)) => true,
        Expr::Literal(_) | Expr::List(_) | Expr::Map(_) | Expr::Struct(_) => false,
        // A variable, a field or an index: the claims decide.
        Expr::Ident(_) | Expr::Select(_) | Expr::Unspecified => true,
        // `all`, `exists` and `exists_one` accumulate a bool; `map` and `filter` a list.
        Expr::Comprehension(comprehension) => match &comprehension.accu_init.expr {
            Expr::Literal(LiteralValue::Boolean(_)) => true,
            Expr::Literal(LiteralValue::Int(_)) => false,
            Expr::List(_) => false,
            _ => true,
        },
        Expr::Call(call) => match call.func_name.as_str() {
            op::CONDITIONAL => call.args.iter().skip(1).all(may_yield_bool),
            op::INDEX | op::OPT_INDEX => true,
            op::ADD | op::SUBSTRACT | op::MULTIPLY | op::DIVIDE | op::MODULO | op::NEGATE => false,
            // Conversions and measures: never a bool.
            "size" | "string" | "int" | "uint" | "double" | "bytes" | "type" | "max" | "min" => {
                false
            }
            _ => true,
        },
    }
}

#[cfg(test)]
mod tests;
