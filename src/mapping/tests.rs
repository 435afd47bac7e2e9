use super::*;
use proptest::prelude::*;
use serde_json::json;

fn compile(mapping: Value) -> ClaimMapper {
    ClaimMapper::compile(mapping.as_object().unwrap()).expect("compiles")
}

#[test]
fn state_backed_documented_example() {
    // The example from State Backed's docs, with its documented result.
    let mapper = compile(json!({
        "sub.$": "$.sub",
        "email.$": "$.email",
        "service": "my-service",
        "special": { "role.$": "$.role.id" }
    }));
    let input = json!({
        "sub": "my-user-id",
        "email": "my-email@statebacked.dev",
        "role": { "id": "my-role" }
    });
    assert_eq!(
        Value::Object(mapper.apply(&input)),
        json!({
            "sub": "my-user-id",
            "email": "my-email@statebacked.dev",
            "service": "my-service",
            "special": { "role": "my-role" }
        })
    );
}

#[test]
fn no_node_omits_one_node_is_value_several_is_array() {
    let mapper = compile(json!({
        "missing.$": "$.nope",
        "one.$": "$.roles[0]",
        "many.$": "$.roles[*]",
        "whole.$": "$.roles"
    }));
    let out = mapper.apply(&json!({ "roles": ["a", "b"] }));
    assert!(!out.contains_key("missing"));
    assert_eq!(out["one"], json!("a"));
    assert_eq!(out["many"], json!(["a", "b"]));
    assert_eq!(out["whole"], json!(["a", "b"]));
}

#[test]
fn reports_every_bad_entry_with_its_path() {
    let errors = ClaimMapper::compile(
        json!({
            "ok.$": "$.sub",
            "bad.$": "$.[",
            "nested": { "role.$": "$$", "num.$": 5 }
        })
        .as_object()
        .unwrap(),
    )
    .unwrap_err();
    let paths: Vec<String> = errors.iter().map(|e| e.key_path.join(".")).collect();
    assert_eq!(paths.len(), 3, "{errors:?}");
    assert!(paths.contains(&"\"bad.$\"".to_owned()));
    assert!(paths.contains(&"nested.\"role.$\"".to_owned()));
    assert!(paths.contains(&"nested.\"num.$\"".to_owned()));
}

fn arb_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[a-z0-9 ]{0,12}".prop_map(Value::from),
    ]
}

/// JSON values whose objects have no `.$` keys (so they read as constants).
fn arb_constant() -> impl Strategy<Value = Value> {
    arb_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn a_mapping_of_constants_returns_itself(
        mapping in prop::collection::btree_map("[a-z_]{1,8}", arb_constant(), 0..6),
        input in arb_constant(),
    ) {
        let mapping: Map<String, Value> = mapping.into_iter().collect();
        let mapper = ClaimMapper::compile(&mapping).unwrap();
        prop_assert_eq!(mapper.apply(&input), mapping);
    }

    #[test]
    fn a_path_agrees_with_direct_indexing(
        object in prop::collection::btree_map("[a-z]{1,6}", arb_constant(), 1..6),
        pick in any::<prop::sample::Index>(),
    ) {
        let input = Value::Object(object.into_iter().collect());
        let keys: Vec<&String> = input.as_object().unwrap().keys().collect();
        let key = keys[pick.index(keys.len())].clone();
        let mut mapping = Map::new();
        mapping.insert("out.$".to_owned(), Value::from(format!("$['{key}']")));
        let mapper = ClaimMapper::compile(&mapping).unwrap();
        let out = mapper.apply(&input);
        prop_assert_eq!(out.get("out"), Some(&input[key.as_str()]));
    }

    #[test]
    fn a_wildcard_over_an_array_agrees_with_its_elements(
        items in prop::collection::vec(arb_leaf(), 0..6),
    ) {
        let input = json!({ "items": &items });
        let mapper = compile(json!({ "all.$": "$.items[*]" }));
        let out = mapper.apply(&input);
        match items.len() {
            0 => prop_assert!(!out.contains_key("all")),
            1 => prop_assert_eq!(&out["all"], &items[0]),
            _ => prop_assert_eq!(&out["all"], &Value::Array(items)),
        }
    }
}
