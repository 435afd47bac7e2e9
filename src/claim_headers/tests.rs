use proptest::prelude::*;
use serde_json::json;

use super::*;

fn table(value: Value) -> HeaderTable {
    let Value::Object(map) = value else {
        panic!("a table is an object")
    };
    HeaderTable::compile(&map).unwrap()
}

fn errors(value: Value) -> Vec<HeaderTableError> {
    let Value::Object(map) = value else {
        panic!("a table is an object")
    };
    HeaderTable::compile(&map).unwrap_err()
}

fn rendered(table: &HeaderTable, payload: &Value) -> Vec<(String, String)> {
    let (headers, _) = table.render(payload);
    headers
        .into_iter()
        .map(|(name, value)| (name.to_string(), String::from_utf8(value.to_vec()).unwrap()))
        .collect()
}

#[test]
fn values_render_as_the_issue_says() {
    assert_eq!(render_value(&json!("a b")).as_deref(), Some("a b"));
    assert_eq!(render_value(&json!(42)).as_deref(), Some("42"));
    assert_eq!(render_value(&json!(1.5)).as_deref(), Some("1.5"));
    assert_eq!(render_value(&json!(true)).as_deref(), Some("true"));
    assert_eq!(
        render_value(&json!(["staff", 7, false, null, {"a": 1}, ["x", "y"]])).as_deref(),
        Some(r#"staff,7,false,null,{"a":1},["x","y"]"#)
    );
    assert_eq!(
        render_value(&json!({"b": [1], "a": "x"})).as_deref(),
        Some(r#"{"a":"x","b":[1]}"#)
    );
    assert_eq!(render_value(&json!(null)), None);
}

#[test]
fn a_table_renders_paths_and_literals_and_skips_missing_paths() {
    let t = table(json!({
        "x-user-id.$": "$.act.sub",
        "x-tenant": "acme",
        "x-level": 3,
        "x-groups.$": "$.act.groups",
        "x-missing.$": "$.act.nothing",
        "x-null.$": "$.act.nil",
    }));
    let payload = json!({"act": {"sub": "alice", "groups": ["a", "b"], "nil": null}});
    assert_eq!(
        rendered(&t, &payload),
        [
            ("x-groups".to_owned(), "a,b".to_owned()),
            ("x-level".to_owned(), "3".to_owned()),
            ("x-tenant".to_owned(), "acme".to_owned()),
            ("x-user-id".to_owned(), "alice".to_owned()),
        ]
    );
    let names: Vec<&str> = t.names().collect();
    assert_eq!(
        names,
        [
            "x-groups",
            "x-level",
            "x-missing",
            "x-null",
            "x-tenant",
            "x-user-id"
        ]
    );
}

#[test]
fn injection_attempts_are_encoded_and_long_values_left_out() {
    let t = table(json!({ "x-a.$": "$.a", "x-long.$": "$.long" }));
    let payload = json!({
        "a": " evil\r\nset-cookie: x=1\u{0}é% ",
        "long": "y".repeat(MAX_HEADER_VALUE_BYTES + 1),
    });
    let (headers, too_long) = t.render(&payload);
    assert_eq!(headers.len(), 1);
    assert_eq!(
        &headers[0].1[..],
        b"%20evil%0D%0Aset-cookie: x=1%00%C3%A9%25%20"
    );
    assert_eq!(too_long, [Arc::from("x-long")]);
}

#[test]
fn bad_names_and_values_are_refused_with_their_key() {
    for name in [
        "authorization",
        "Authorization",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "te",
        "upgrade",
        "x-forwarded-for",
        "x-forwarded-anything",
        "x user",
        "x:y",
        "",
        "é",
    ] {
        let e = errors(json!({ name: "v" }));
        assert_eq!(e.len(), 1, "{name}: {e:?}");
        assert_eq!(e[0].key.as_deref(), Some(quote_key(name).as_str()));
    }
    let e = errors(json!({ "x-a": {"nested": "x"} }));
    assert!(e[0].reason.contains("literal value"), "{e:?}");
    let e = errors(json!({ "x-a.$": 3 }));
    assert!(e[0].reason.contains("JSONPath"), "{e:?}");
    let e = errors(json!({ "x-a.$": "$[" }));
    assert_eq!(e[0].key.as_deref(), Some("\"x-a.$\""));
    assert!(e[0].reason.contains("invalid JSONPath"), "{e:?}");
    let e = errors(json!({ "x-a.$": "$.a", "x-a": "b" }));
    assert!(e[0].reason.contains("twice"), "{e:?}");
}

#[test]
fn the_cache_renders_once_per_table_and_keeps_tables_apart() {
    let one = table(json!({ "x-a.$": "$.a" }));
    let two = table(json!({ "x-b.$": "$.a" }));
    let cache = RenderCache::default();
    let payload = json!({"a": "v"});
    let first = cache.rendered(&one, &payload, |_| {});
    let again = cache.rendered(&one, &json!({"a": "other"}), |_| {});
    assert!(Arc::ptr_eq(&first, &again));
    let other = cache.rendered(&two, &payload, |_| {});
    assert_eq!(&*other[0].0, "x-b");
    // More tables than slots: still right, only not cached.
    for _ in 0..CACHED_TABLES + 2 {
        let extra = table(json!({ "x-c.$": "$.a" }));
        assert_eq!(&*cache.rendered(&extra, &payload, |_| {})[0].0, "x-c");
    }
}

#[test]
fn decode_refuses_malformed_escapes() {
    assert_eq!(decode("%4").as_deref(), None);
    assert_eq!(decode("%+1").as_deref(), None);
    assert_eq!(decode("%zz").as_deref(), None);
    assert_eq!(decode("a%20b").as_deref(), Some(&b"a b"[..]));
}

/// Any JSON value, strings drawn from all of Unicode (controls included).
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        "[ \\r\\n\\x00%a-z]{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z\\r\\n]{0,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn encoded_values_never_hold_a_line_break_or_nul_and_decode_back(text in any::<String>()) {
        let encoded = encode(&text);
        prop_assert!(!encoded.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0));
        prop_assert!(encoded.bytes().all(|b| (0x20..=0x7E).contains(&b)));
        prop_assert!(!encoded.starts_with(' ') && !encoded.ends_with(' '));
        prop_assert_eq!(decode(&encoded), Some(text.into_bytes()));
    }

    #[test]
    fn rendered_claims_are_always_valid_header_values(value in any_value()) {
        let t = table(json!({ "x-v.$": "$.v", "x-all.$": "$.*" }));
        let (headers, _) = t.render(&json!({ "v": value }));
        for (_, bytes) in headers {
            prop_assert!(bytes.len() <= MAX_HEADER_VALUE_BYTES);
            prop_assert!(!bytes.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
            prop_assert!(http::HeaderValue::from_maybe_shared(bytes).is_ok());
        }
    }
}
