use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;

use super::*;

fn claims(value: serde_json::Value) -> Claims {
    Claims::from_json(&value).expect("claims convert")
}

fn eval(source: &str, scope: Scope, inputs: &Inputs<'_>) -> Result<bool, Undecided> {
    Condition::compile(source, scope)
        .expect("compiles")
        .evaluate(inputs)
}

fn compile_error(source: &str, scope: Scope) -> String {
    Condition::compile(source, scope)
        .expect_err("must not compile")
        .to_string()
}

#[test]
fn an_idp_condition_reads_the_claims() {
    let google = claims(json!({"email_verified": true, "hd": "example.com", "aud": "x"}));
    let inputs = Inputs {
        claims: Some(&google),
        ..Inputs::default()
    };
    let source = r#"claims.email_verified == true && claims.hd == "example.com""#;
    assert_eq!(eval(source, Scope::Idp, &inputs), Ok(true));
    let other = claims(json!({"email_verified": true, "hd": "evil.example"}));
    let inputs = Inputs {
        claims: Some(&other),
        ..Inputs::default()
    };
    assert_eq!(eval(source, Scope::Idp, &inputs), Ok(false));
}

#[test]
fn a_provider_condition_reads_the_actor_as_a_map() {
    let intermediate = claims(json!({"sub": "u1"}));
    let actor = claims(json!({"sub": "svc-a", "iss": "https://idp-b"}));
    let inputs = Inputs {
        claims: Some(&intermediate),
        actor: Some(&actor),
        ..Inputs::default()
    };
    let source = r#"actor != null && actor.sub == "svc-a" && claims.sub == "u1""#;
    assert_eq!(eval(source, Scope::Provider, &inputs), Ok(true));
    assert_eq!(
        eval(r#"actor.sub == "svc-b""#, Scope::Provider, &inputs),
        Ok(false)
    );
}

#[test]
fn a_provider_condition_reads_idp_and_client_and_actor_is_null() {
    let intermediate = claims(json!({"sub": "u1", "groups": ["dev", "ops"]}));
    let inputs = Inputs {
        claims: Some(&intermediate),
        idp: Some("google"),
        client: Some("ci"),
        actor: None,
        request: None,
    };
    let source = r#"idp == "google" && client == "ci" && actor == null && "ops" in claims.groups"#;
    assert_eq!(eval(source, Scope::Provider, &inputs), Ok(true));
    let anonymous = Inputs {
        client: None,
        ..inputs
    };
    assert_eq!(
        eval("client == null", Scope::Provider, &anonymous),
        Ok(true)
    );
    assert_eq!(eval(source, Scope::Provider, &anonymous), Ok(false));
}

#[test]
fn a_route_condition_reads_the_request() {
    let minted = claims(json!({"act": {"sub": "u1"}}));
    let mut headers = BTreeMap::new();
    headers.insert("x-tenant".to_owned(), "acme".to_owned());
    let request = RequestFacts {
        method: "GET",
        path: "/api/items",
        headers,
    };
    let inputs = Inputs {
        claims: Some(&minted),
        request: Some(&request),
        ..Inputs::default()
    };
    let source = r#"request.method in ["GET", "HEAD"] && request.path.startsWith("/api/") && request.headers["x-tenant"] == "acme" && claims.act.sub == "u1""#;
    let condition = Condition::compile(source, Scope::Route).unwrap();
    assert!(condition.reads_headers());
    assert_eq!(condition.evaluate(&inputs), Ok(true));
    let post = RequestFacts {
        method: "POST",
        ..request.clone()
    };
    let inputs = Inputs {
        request: Some(&post),
        ..inputs
    };
    assert_eq!(condition.evaluate(&inputs), Ok(false));
    assert!(
        !Condition::compile(r#"request.method == "GET""#, Scope::Route)
            .unwrap()
            .reads_headers()
    );
}

#[test]
fn comprehensions_over_claims_work() {
    let c = claims(json!({"groups": ["a", "b"], "roles": {"admin": true}}));
    let inputs = Inputs {
        claims: Some(&c),
        ..Inputs::default()
    };
    assert_eq!(
        eval(r#"claims.groups.exists(g, g == "b")"#, Scope::Idp, &inputs),
        Ok(true)
    );
    assert_eq!(
        eval(
            r#"claims.groups.all(g, g.size() == 1)"#,
            Scope::Idp,
            &inputs
        ),
        Ok(true)
    );
    assert_eq!(
        eval(r#"has(claims.roles.admin)"#, Scope::Idp, &inputs),
        Ok(true)
    );
    assert_eq!(
        eval(r#"has(claims.missing)"#, Scope::Idp, &inputs),
        Ok(false)
    );
}

#[test]
fn an_evaluation_error_is_undecided_and_names_no_value() {
    let c = claims(json!({"email": "secret-person@example.com", "n": 3}));
    let inputs = Inputs {
        claims: Some(&c),
        ..Inputs::default()
    };
    let missing = eval("claims.missing == 1", Scope::Idp, &inputs).unwrap_err();
    assert!(missing.to_string().contains("missing"), "{missing}");
    let mismatch = eval(r#"claims.email > 3"#, Scope::Idp, &inputs).unwrap_err();
    assert!(
        !mismatch.to_string().contains("secret-person"),
        "{mismatch}"
    );
    // A field that holds no bool where one is needed.
    let not_bool = eval("claims.email", Scope::Idp, &inputs).unwrap_err();
    assert!(
        !not_bool.to_string().contains("secret-person"),
        "{not_bool}"
    );
    // No claims at all (null): an error, not a pass.
    assert!(eval("claims.sub == \"x\"", Scope::Idp, &Inputs::default()).is_err());
}

#[test]
fn unknown_variables_are_refused_per_scope() {
    let e = compile_error("request.method == \"GET\"", Scope::Idp);
    assert!(e.contains("`request`") && e.contains("claims"), "{e}");
    let e = compile_error("idp == \"x\"", Scope::Route);
    assert!(e.contains("`idp`"), "{e}");
    assert!(Condition::compile("idp == \"x\"", Scope::Provider).is_ok());
    // A comprehension's variable is bound in its body only.
    assert!(Condition::compile("claims.g.exists(x, x == 1)", Scope::Idp).is_ok());
    let e = compile_error("claims.g.exists(x, x == 1) && x == 2", Scope::Idp);
    assert!(e.contains("`x`"), "{e}");
}

#[test]
fn expressions_that_cannot_yield_a_bool_are_refused() {
    for source in [
        "claims.n + 1",
        "\"yes\"",
        "1",
        "[true]",
        "{\"a\": true}",
        "size(claims.groups)",
        "claims.groups.map(g, g == 1)",
        "claims.groups.filter(g, g == 1)",
        "true ? 1 : 2",
    ] {
        let e = compile_error(source, Scope::Idp);
        assert!(e.contains("bool"), "{source}: {e}");
    }
    for source in [
        "true",
        "claims.email_verified",
        "!claims.banned",
        "claims.a ? true : claims.b",
    ] {
        assert!(Condition::compile(source, Scope::Idp).is_ok(), "{source}");
    }
}

#[test]
fn syntax_errors_name_the_place() {
    let e = compile_error("claims.a ==", Scope::Idp);
    assert!(e.starts_with("does not parse:") && e.contains("1:"), "{e}");
    assert_eq!(compile_error("  ", Scope::Idp), "is empty");
}

#[test]
fn compiling_is_bounded() {
    let long = format!("claims.a == \"{}\"", "x".repeat(MAX_CONDITION_BYTES));
    assert!(compile_error(&long, Scope::Idp).contains("longer than"));
    // Nested parentheses, brackets and calls: refused by the parser's recursion limit.
    for deep in [
        format!("{}true{}", "(".repeat(2000), ")".repeat(2000)),
        format!("{}1{} == 1", "[".repeat(1000), "]".repeat(1000)),
        format!("{}claims.a{} == 1", "size(".repeat(500), ")".repeat(500)),
    ] {
        let e = compile_error(&deep, Scope::Idp);
        assert!(e.contains("parse") || e.contains("nests"), "{e}");
    }
    // A long left-leaning chain builds a deep tree without deep parser recursion.
    let chain = format!("{} == 1", vec!["claims.n"; 300].join(" + "));
    assert!(compile_error(&chain, Scope::Idp).contains("nests deeper"));
    // Comprehensions in comprehensions would make evaluation quadratic or worse.
    let nested = "claims.a.exists(x, claims.b.exists(y, x == y))";
    assert!(compile_error(nested, Scope::Idp).contains("inside another"));
    // A comprehension over another's result is linear: allowed.
    assert!(Condition::compile("claims.a.filter(x, x > 1).exists(y, y == 3)", Scope::Idp).is_ok());
}

#[test]
fn the_longest_sources_compile_from_a_small_stack() {
    // What a runtime worker or an admin request handler calls from: the parser's recursion on
    // a 4 KiB chain must not need the caller's stack.
    let sources = [
        format!("{} == 1", vec!["a"; 2000].join("+")),
        format!("a{} == 1", ".b".repeat(2000)),
        format!("a{} == 1", "[0]".repeat(1300)),
        format!("{}true{}", "(".repeat(2000), ")".repeat(2000)),
    ];
    std::thread::Builder::new()
        .stack_size(128 << 10)
        .spawn(move || {
            for source in sources {
                assert!(source.len() <= MAX_CONDITION_BYTES);
                assert!(Condition::compile(&source, Scope::Idp).is_err());
            }
        })
        .unwrap()
        .join()
        .expect("no stack overflow");
}

#[test]
fn the_debug_form_of_claims_shows_no_value() {
    let c = claims(json!({"email": "person@example.com"}));
    assert_eq!(format!("{c:?}"), "Claims(..)");
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z_]{1,6}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Whatever the claims hold, every condition decides or says it cannot: never a panic.
    #[test]
    fn conditions_over_generated_claims_never_panic(
        value in json_value(),
        extra in json_value(),
    ) {
        let mut object = serde_json::Map::new();
        object.insert("a".into(), value);
        object.insert("email_verified".into(), extra);
        let c = claims(serde_json::Value::Object(object));
        let inputs = Inputs { claims: Some(&c), ..Inputs::default() };
        for source in [
            "claims.email_verified == true && claims.a == \"x\"",
            "claims.a.exists(x, x == 1)",
            "claims.a.all(x, x.size() > 0)",
            "\"k\" in claims.a",
            "claims.a > 1 || claims.a < 0.5",
            "claims.a.startsWith(\"x\")",
            "has(claims.a.b) && claims.a.b[0] == claims.a",
            "size(claims.a) == 2",
            "claims.a + claims.a == claims.a",
            "claims.a / 0 == 1 || claims.a % 0 == 1",
        ] {
            let _ = eval(source, Scope::Idp, &inputs);
        }
    }

    /// Arbitrary source text compiles or is refused with a message: never a panic.
    #[test]
    fn arbitrary_sources_never_panic(source in "[ -~]{0,80}") {
        let _ = Condition::compile(&source, Scope::Route);
    }
}

#[test]
fn the_claims_a_condition_reads_by_name_are_listed_once_in_order() {
    let condition = Condition::compile(
        r#"claims.email_verified == true && claims.hd == "example.com" && claims.org.id != "" && claims.hd != "x" && claims.groups.exists(g, g == "admins")"#,
        Scope::Idp,
    )
    .unwrap();
    let paths: Vec<String> = condition
        .claim_paths()
        .iter()
        .map(|path| path.join("."))
        .collect();
    assert_eq!(paths, ["email_verified", "hd", "org.id", "groups"]);
    // A comprehension's own name is not a claim, even when called `claims`.
    let shadowed = Condition::compile("claims.list.all(claims, claims.ok)", Scope::Idp).unwrap();
    let paths: Vec<String> = shadowed.claim_paths().iter().map(|p| p.join(".")).collect();
    assert_eq!(paths, ["list"]);
}

#[test]
fn a_long_chain_of_claim_fields_is_bounded_too() {
    let chain = format!("claims.{} == 1", vec!["a"; MAX_NESTING + 1].join("."));
    let e = compile_error(&chain, Scope::Idp);
    assert!(e.contains("nests deeper") || e.contains("parse"), "{e}");
    let fine = format!("claims.{} == 1", vec!["a"; MAX_NESTING - 4].join("."));
    assert!(Condition::compile(&fine, Scope::Idp).is_ok());
}
