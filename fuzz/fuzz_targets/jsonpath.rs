//! Claim mappings: `ClaimMapper::compile` on a mapping, then `apply` over claims.
//!
//! Input: `MAPPING \0 CLAIMS`. `MAPPING` is a JSON object (a mapping as the config file and
//! the admin API give it); when it is not one, the whole of it is taken as one JSONPath, as in
//! `{"out.$": MAPPING}`, so that the fuzzer reaches the JSONPath parser directly. `CLAIMS` is
//! the JSON the mapping runs over (fixed, realistic claims when there is no `\0` or it is not
//! JSON).

#![no_main]

use baton::mapping::ClaimMapper;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

fuzz_target!(|data: &[u8]| {
    let (mapping_bytes, claims_bytes) = match data.iter().position(|b| *b == 0) {
        Some(split) => (&data[..split], Some(&data[split + 1..])),
        None => (data, None),
    };
    let mapping = match serde_json::from_slice::<Value>(mapping_bytes) {
        Ok(Value::Object(mapping)) => mapping,
        _ => {
            let mut mapping = Map::new();
            let path = String::from_utf8_lossy(mapping_bytes).into_owned();
            mapping.insert("out.$".to_owned(), Value::String(path));
            mapping
        }
    };
    let claims = claims_bytes
        .and_then(|bytes| serde_json::from_slice::<Value>(bytes).ok())
        .unwrap_or_else(default_claims);

    let Ok(mapper) = ClaimMapper::compile(&mapping) else {
        return;
    };
    // An error is the claims' size bound (MAX_MAPPED_VALUES): the exchange refuses the token.
    let output = mapper.apply(&claims);

    // What the admin API lists is the compiled mapping written back: it must compile again
    // and map the same (a client may read a mapping and write it back unchanged).
    let listed = mapper.to_json();
    let again = ClaimMapper::compile(&listed).unwrap_or_else(|errors| {
        panic!("the listed mapping {listed:?} does not compile again: {errors:?}")
    });
    assert_eq!(
        again.apply(&claims),
        output,
        "the listed mapping {listed:?} maps differently"
    );
});

fn default_claims() -> Value {
    json!({
        "iss": "https://idp.fuzz",
        "sub": "user-1",
        "aud": ["authenticated", "api"],
        "exp": 4_000_000_000u64,
        "email": "user@example.com",
        "app_metadata": { "roles": ["admin", "dev"], "tenant": { "id": 7, "name": "t" } },
        "groups": ["admin", "ops", { "name": "nested", "groups": ["x"] }],
        "org id": "org_1",
        "scores": [1, 2.5, -3, null, true, "4"],
        "a.b": { "c": [ { "d": 1 }, { "d": [2, 3] } ] }
    })
}
