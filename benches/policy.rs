//! Evaluating conditions: `cargo bench --bench policy`. With mimalloc, as the binary runs.
//!
//! - `condition/idp_typical`: `claims.email_verified == true && claims.aud == "x"` over a
//!   Google-shaped token's claims (converted once, as the pipeline does per exchange);
//! - `condition/route_method_path`: a route condition over the minted claims and the request's
//!   method and path (what the proxy evaluates on every request, cache hits included);
//! - `condition/route_header`: the same reading one request header (the headers map is built
//!   per request, only for conditions that read it);
//! - `claims/convert`: converting those claims for evaluation (once per exchange);
//! - `compile/typical`: compiling a condition (once per config load or admin write).

use std::collections::BTreeMap;
use std::hint::black_box;

use baton::policy::{Claims, Condition, Inputs, RequestFacts, Scope};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn google_claims() -> serde_json::Value {
    json!({
        "iss": "https://accounts.google.com",
        "azp": "1234.apps.googleusercontent.com",
        "aud": "x",
        "sub": "110169484474386276334",
        "hd": "example.com",
        "email": "person@example.com",
        "email_verified": true,
        "iat": 1_796_129_593,
        "exp": 1_796_133_193,
        "name": "A Person",
    })
}

fn condition(c: &mut Criterion) {
    let mut group = c.benchmark_group("condition");
    let claims = Claims::from_json(&google_claims()).unwrap();
    let idp = Condition::compile(
        r#"claims.email_verified == true && claims.aud == "x""#,
        Scope::Idp,
    )
    .unwrap();
    let inputs = Inputs {
        claims: Some(&claims),
        ..Inputs::default()
    };
    assert_eq!(idp.evaluate(&inputs), Ok(true));
    group.bench_function("idp_typical", |b| {
        b.iter(|| idp.evaluate(black_box(&inputs)))
    });

    let minted =
        Claims::from_json(&json!({"sub": "110169484474386276334", "role": "dev"})).unwrap();
    let route = Condition::compile(
        r#"request.method == "GET" && claims.role == "dev""#,
        Scope::Route,
    )
    .unwrap();
    let request = RequestFacts {
        method: "GET",
        path: "/api/items/42",
        headers: BTreeMap::new(),
    };
    let inputs = Inputs {
        claims: Some(&minted),
        request: Some(&request),
        ..Inputs::default()
    };
    assert_eq!(route.evaluate(&inputs), Ok(true));
    group.bench_function("route_method_path", |b| {
        b.iter(|| route.evaluate(black_box(&inputs)))
    });

    let header = Condition::compile(
        r#"request.headers["x-tenant"] == "acme" && claims.role == "dev""#,
        Scope::Route,
    )
    .unwrap();
    group.bench_function("route_header", |b| {
        b.iter(|| {
            let mut headers = BTreeMap::new();
            for (name, value) in [("host", "app"), ("accept", "*/*"), ("x-tenant", "acme")] {
                headers.insert(name.to_owned(), value.to_owned());
            }
            let request = RequestFacts {
                method: "GET",
                path: "/api/items/42",
                headers,
            };
            let inputs = Inputs {
                claims: Some(&minted),
                request: Some(&request),
                ..Inputs::default()
            };
            header.evaluate(black_box(&inputs))
        })
    });
    group.finish();

    c.bench_function("compile/typical", |b| {
        b.iter(|| {
            Condition::compile(
                black_box(r#"claims.email_verified == true && claims.hd == "example.com""#),
                Scope::Idp,
            )
        })
    });

    let value = google_claims();
    c.bench_function("claims/convert", |b| {
        b.iter(|| Claims::from_json(black_box(&value)))
    });
}

criterion_group!(benches, condition);
criterion_main!(benches);
