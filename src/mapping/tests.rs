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
        Value::Object(mapper.apply(&input).unwrap()),
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
    let out = mapper.apply(&json!({ "roles": ["a", "b"] })).unwrap();
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
        prop_assert_eq!(mapper.apply(&input).unwrap(), mapping);
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
        let out = mapper.apply(&input).unwrap();
        prop_assert_eq!(out.get("out"), Some(&input[key.as_str()]));
    }

    #[test]
    fn a_wildcard_over_an_array_agrees_with_its_elements(
        items in prop::collection::vec(arb_leaf(), 0..6),
    ) {
        let input = json!({ "items": &items });
        let mapper = compile(json!({ "all.$": "$.items[*]" }));
        let out = mapper.apply(&input).unwrap();
        match items.len() {
            0 => prop_assert!(!out.contains_key("all")),
            1 => prop_assert_eq!(&out["all"], &items[0]),
            _ => prop_assert_eq!(&out["all"], &Value::Array(items)),
        }
    }
}

fn compile_errors(mapping: Value) -> Vec<String> {
    ClaimMapper::compile(mapping.as_object().unwrap())
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn path_error(path: &str) -> String {
    let errors = compile_errors(json!({ "role.$": path }));
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.into_iter().next().unwrap()
}

/// The nested filter path of the issue: each level doubled the parse time.
fn nested_filters(levels: usize) -> String {
    format!("${}{}", "[?@".repeat(levels), "]".repeat(levels))
}

#[test]
fn a_path_nesting_thousands_of_parentheses_is_refused_without_parsing() {
    // This overflowed the stack inside serde_json_path's parser.
    let path = format!("$[?{}@.a{}]", "(".repeat(5000), ")".repeat(5000));
    let error = path_error(&path);
    assert!(
        error.starts_with("\"role.$\": the JSONPath is 10007 bytes long; at most 512"),
        "{error}"
    );
    let path = format!("$[?{}@.a{}]", "(".repeat(200), ")".repeat(200));
    assert_eq!(
        path_error(&path),
        "\"role.$\": the JSONPath nests 201 levels deep; at most 6 are allowed"
    );
}

#[test]
fn nested_filters_are_refused_past_the_nesting_bound_and_compile_fast_within_it() {
    assert_eq!(
        path_error(&nested_filters(24)),
        "\"role.$\": the JSONPath nests 24 levels deep; at most 6 are allowed"
    );
    let start = std::time::Instant::now();
    // Parsed (its evaluation cost is then over the bound: it is refused either way).
    let errors = compile_errors(json!({ "deep.$": nested_filters(MAX_PATH_NESTING) }));
    assert!(errors[0].contains("evaluation steps"), "{errors:?}");
    assert!(
        start.elapsed() < std::time::Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn brackets_and_quotes_inside_string_literals_do_not_count() {
    let brackets = "[(".repeat(100);
    compile(json!({
        "a.$": format!("$['{brackets}']"),
        "b.$": format!("$[\"{brackets}\\\"\"]"),
        "c.$": format!("$['it\\'s {brackets}'].x"),
    }));
}

#[test]
fn regex_functions_are_refused() {
    for path in [
        "$[?match(@.a, 'x.*')]",
        "$[?search(@.a, $.pattern)]",
        "$[? !match(@, 'a')]",
    ] {
        let error = path_error(path);
        assert!(error.contains("is not supported"), "{path}: {error}");
    }
    // A member named like a function is a name.
    compile(json!({ "a.$": "$.match", "b.$": "$.search.match", "c.$": "$['match']" }));
}

#[test]
fn at_most_one_descendant_segment() {
    compile(json!({ "a.$": "$..roles", "b.$": "$.a[?@..admin]" }));
    for path in ["$..a..b", "$..[?@..x]", "$.a[?@..x || @..y]"] {
        let error = path_error(path);
        assert!(
            error.contains("descendant segments (`..`); at most 1"),
            "{path}: {error}"
        );
    }
    // `..` inside a string is a name.
    compile(json!({ "a.$": "$['..']..x" }));
}

#[test]
fn root_queries_inside_filters_must_be_singular() {
    compile(json!({ "a.$": "$.groups[?@ == $.tenant]" }));
    compile(json!({ "b.$": "$.orgs[?@.id == $['org'][0]].name" }));
    for path in [
        "$.a[?$[*]]",
        "$.a[?$..x]",
        "$.a[?count($.b[?@]) > 1]",
        "$.a[?value($.b[*]) == 1]",
    ] {
        let error = path_error(path);
        assert!(error.contains("singular query"), "{path}: {error}");
    }
}

#[test]
fn selector_lists_may_not_multiply_past_the_fanout_bound() {
    compile(json!({ "a.$": "$['given_name','family_name']", "b.$": "$.a[0,1][0,1]" }));
    let error = path_error("$.a[*,*][*,*,*]");
    assert!(
        error.ends_with("select a node up to 6 times; at most 4 are allowed"),
        "{error}"
    );
}

#[test]
fn the_cost_of_all_paths_is_bounded_together() {
    // Plain names cost nothing, however many.
    let names: Map<String, Value> = (0..100)
        .map(|i| (format!("c{i}.$"), Value::from(format!("$.claim{i}"))))
        .collect();
    ClaimMapper::compile(&names).unwrap();
    // A filter with one comparison costs 2 (the pass and the `@`).
    let filters: Map<String, Value> = (0..MAX_MAPPING_COST / 2 + 1)
        .map(|i| (format!("f{i}.$"), Value::from("$.groups[?@ == 'admin']")))
        .collect();
    let errors = ClaimMapper::compile(&filters).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].key_path.is_empty());
    assert!(
        errors[0]
            .to_string()
            .starts_with("the mapping's JSONPaths cost 10 evaluation steps together; at most 8"),
        "{}",
        errors[0]
    );
    // One path alone over the bound is named.
    let terms = vec!["@.x"; 20].join(" || ");
    let error = path_error(&format!("$.a[?{terms}]"));
    assert!(
        error.contains("the JSONPath costs 41 evaluation steps"),
        "{error}"
    );
}

#[test]
fn mapping_size_and_depth_are_bounded() {
    let wide: Map<String, Value> = (0..=MAX_MAPPING_ENTRIES)
        .map(|i| (format!("k{i}"), Value::from(i)))
        .collect();
    let errors = ClaimMapper::compile(&wide).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .to_string()
            .starts_with("the mapping has 257 entries"),
        "{}",
        errors[0]
    );
    // Values inside constants count too.
    let errors = compile_errors(json!({ "list": vec![0; MAX_MAPPING_ENTRIES] }));
    assert!(
        errors[0].starts_with("the mapping has 257 entries"),
        "{errors:?}"
    );
    // All paths together: past the byte bound, nothing more is parsed.
    let long = format!("$.a{}", ".b".repeat(200));
    let paths: Map<String, Value> = (0..=MAX_MAPPING_PATH_BYTES / long.len())
        .map(|i| (format!("p{i}.$"), Value::from(long.as_str())))
        .collect();
    let errors: Vec<String> = ClaimMapper::compile(&paths)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let total = paths.len() * long.len();
    assert_eq!(
        errors[0],
        format!(
            "the mapping's JSONPaths are {total} bytes long together; at most 4096 are allowed"
        )
    );
    let errors = compile_errors(json!({ "list": vec![0; MAX_MAPPING_ENTRIES] }));
    assert!(
        errors[0].starts_with("the mapping has 257 entries"),
        "{errors:?}"
    );

    let mut deep = json!({ "leaf.$": "$.sub" });
    for _ in 0..MAX_MAPPING_DEPTH {
        deep = json!({ "n": deep });
    }
    let errors = compile_errors(deep);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0],
        "n.n.n.n.n.n.n.n: the mapping nests objects more than 8 levels deep"
    );
}

#[test]
fn output_past_the_value_bound_is_refused() {
    // Nested `roles` objects: `$..roles` copies each subtree once per enclosing `roles`.
    let mut nested = json!(vec![0; 200]);
    for _ in 0..10 {
        nested = json!({ "roles": nested });
    }
    let mapper = compile(json!({ "all.$": "$..roles" }));
    assert_eq!(mapper.apply(&nested), Err(MappedClaimsTooLarge));
    let mapper = compile(json!({ "roles.$": "$.roles" }));
    assert!(mapper.apply(&nested).is_ok());
    // Exactly at the bound passes; one more fails.
    let input = json!({ "a": vec![0; MAX_MAPPED_VALUES - 2] });
    let mapper = compile(json!({ "a.$": "$.a" }));
    assert!(mapper.apply(&input).is_ok());
    let mapper = compile(json!({ "a.$": "$.a", "b": 1 }));
    assert!(mapper.apply(&input).is_ok());
    let mapper = compile(json!({ "a.$": "$.a", "b": [1] }));
    assert_eq!(mapper.apply(&input), Err(MappedClaimsTooLarge));
}

/// Found by fuzzing (`fuzz/` jsonpath target): serde_json_path 0.7.2 panics on a string
/// literal that ends inside a `\u` escape. It must be a config error naming the key.
#[test]
fn a_truncated_unicode_escape_is_an_error_not_a_panic() {
    for path in [r"$['\u", r"$['\u00", r#"$["\u12"]"#, r"$[?@ == '\uZZZZ']"] {
        let errors = compile_errors(json!({ "x.$": path }));
        assert_eq!(errors.len(), 1, "{path}: {errors:?}");
        assert!(
            errors[0].starts_with("\"x.$\": invalid JSONPath"),
            "{path}: {errors:?}"
        );
    }
    // A well-formed escape still compiles.
    compile(json!({ "x.$": r"$['caf\u00e9']" }));
}

/// Found by fuzzing: a listed mapping (the admin API lists them) must compile again to the
/// same mapping; serde_json_path's `Display` turned `$..a` into `$...a`.
#[test]
fn a_listed_mapping_is_its_source_and_compiles_again() {
    let source = json!({ "a.$": "$..name", "b.$": "$['a\\'b']", "c": { "d.$": "$.x[0]" } });
    let listed = Value::Object(compile(source.clone()).to_json());
    assert_eq!(listed, source);
    compile(listed);
}
