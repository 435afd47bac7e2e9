//! Conditions: `Condition::compile` on a CEL source (from the config file or an admin write),
//! then `evaluate` over claims and a request, in each scope.
//!
//! Input: `SCOPE SOURCE \0 CLAIMS`: the first byte picks the scope (idp, provider, route).
//! `CLAIMS` is the JSON the condition reads as `claims` (fixed,
//! realistic claims when there is no `\0` or it is not JSON). Compiling refuses or accepts;
//! evaluating decides or is undecided: neither may panic, overflow the stack or run long
//! (libFuzzer's timeout).

#![no_main]

use std::collections::BTreeMap;

use baton::policy::{Claims, Condition, Inputs, MAX_CONDITION_BYTES, RequestFacts, Scope};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let Some((&scope, data)) = data.split_first() else {
        return;
    };
    let scope = [Scope::Idp, Scope::Provider, Scope::Route][usize::from(scope % 3)];
    let (source_bytes, claims_bytes) = match data.iter().position(|b| *b == 0) {
        Some(split) => (&data[..split], Some(&data[split + 1..])),
        None => (data, None),
    };
    let source = String::from_utf8_lossy(source_bytes);
    let claims = claims_bytes
        .and_then(|bytes| serde_json::from_slice::<Value>(bytes).ok())
        .unwrap_or_else(default_claims);
    let Ok(claims) = Claims::from_json(&claims) else {
        return;
    };
    let mut headers = BTreeMap::new();
    headers.insert("x-tenant".to_owned(), "acme".to_owned());
    headers.insert("accept".to_owned(), "*/*".to_owned());
    let request = RequestFacts {
        method: "GET",
        path: "/api/items",
        headers,
    };
    let Ok(condition) = Condition::compile(&source, scope) else {
        return;
    };
    assert!(source.len() <= MAX_CONDITION_BYTES);
    assert_eq!(condition.source(), source);
    let inputs = Inputs {
        claims: Some(&claims),
        idp: Some("google"),
        client: Some("ci"),
        // The same claims as the actor's: a delegated exchange's provider condition reads both.
        actor: (scope == Scope::Provider).then_some(&claims),
        request: (scope == Scope::Route).then_some(&request),
    };
    let _ = condition.evaluate(&inputs);
    let _ = condition.evaluate(&Inputs::default());
});

fn default_claims() -> Value {
    json!({
        "iss": "https://accounts.google.com",
        "sub": "110169484474386276334",
        "aud": ["x", "api"],
        "hd": "example.com",
        "email": "person@example.com",
        "email_verified": true,
        "groups": ["admins", "ops", {"name": "nested"}],
        "n": 3,
        "f": 2.5,
        "act": {"sub": "u1", "roles": ["dev"]}
    })
}
