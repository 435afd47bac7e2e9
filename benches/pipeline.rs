//! Hot-path benchmarks: `cargo bench --bench pipeline`.
//!
//! - `verify/*`: a subject token through baton's verifier (parse, select, alg, signature,
//!   time claims), per algorithm;
//! - `map/5-keys`: a five-key mapping;
//! - `map/worst/*`: the costliest mappings baton accepts (`mapping::MAX_MAPPING_COST`) over
//!   the costliest claims a token may hold (`token::MAX_CLAIM_VALUES`), one per shape;
//!   `pipeline/worst-mapping` runs the worst through both mappings of a cold exchange;
//! - `compile/worst/*`: the slowest path to parse that reaches the parser, alone and as
//!   many times as a mapping may hold;
//! - `mint/*`: signing a `statebacked` token;
//! - `pipeline/*`: the whole exchange, cold (a distinct token each time, so every call
//!   verifies, maps and mints) and warm (a cache hit);
//! - `baseline/rs256-verify+hs256-sign`: the bare crypto the cold pipeline cannot avoid,
//!   measured in the same run, so the pipeline's overhead is a ratio.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use baton::clock::SystemClock;
use baton::config::Config;
use baton::exchange::{Exchanger, ExchangerOptions};
use baton::explain::Trace;
use baton::idp::IdpSet;
use baton::idp::jwks::{JwksCache, JwksPolicy};
use baton::idp::verify::Verifier;
use baton::keygen;
use baton::mapping::ClaimMapper;
use baton::mint::keys::SigningKey;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{Value, json};

const HMAC_SECRET: &str = "idp-hmac-secret-for-benchmarks-0123456789";

/// An IdP key: the signing half for making tokens, the config line for baton.
struct IdpKey {
    signing: SigningKey,
    config_key: String,
}

fn idp_key(alg: Algorithm) -> IdpKey {
    if alg == Algorithm::HS256 {
        let secret = baton::secret::Secret::new(HMAC_SECRET);
        return IdpKey {
            signing: SigningKey::hmac("idp", alg, &secret).unwrap(),
            config_key: format!("key = \"{}\"", URL_SAFE_NO_PAD.encode(HMAC_SECRET)),
        };
    }
    let generated = keygen::generate(alg).unwrap();
    let signing = SigningKey::from_private_pem("idp", alg, generated.material.expose()).unwrap();
    let jwk = serde_json::to_string(signing.public_jwk().unwrap()).unwrap();
    IdpKey {
        signing,
        config_key: format!("key = \"{}\"", URL_SAFE_NO_PAD.encode(jwk)),
    }
}

fn config(idp: &IdpKey, mint_alg: &str, mint_key: &str) -> Config {
    let alg = baton::algorithm::name(idp.signing.algorithm());
    let source = format!(
        r#"
[[keys]]
id = "sbk_bench"
algorithm = "{mint_alg}"
{mint_key}

[[idps]]
issuer = "https://idp.bench"
audience = "app"
algorithms = ["{alg}"]
{}
mapping = {{ "sub.$" = "$.sub", "email.$" = "$.email", "roles.$" = "$.roles", org = "acme", "name.$" = "$.name" }}

[[token_providers]]
service = "app"
key = "sbk_bench"
mapping = {{ "sub.$" = "$.sub", "email.$" = "$.email", "roles.$" = "$.roles", "org.$" = "$.org", "name.$" = "$.name" }}
"#,
        idp.config_key
    );
    Config::from_toml(&source, Path::new("."), &|_| None).unwrap()
}

/// The config of `pipeline/worst-mapping`: the IdP mapping passes the claims on whole (in
/// `c`, costing nothing) beside the costliest shape; the provider mapping runs the same
/// shape over the claims it got.
fn worst_config(idp: &IdpKey, mint_alg: &str, mint_key: &str) -> Config {
    let (_, mut idp_mapping) = worst_mappings("$").swap_remove(WORST_SHAPE);
    idp_mapping.insert("c.$".to_owned(), json!("$"));
    let (_, mut provider_mapping) = worst_mappings("$.c").swap_remove(WORST_SHAPE);
    provider_mapping.insert("sub.$".to_owned(), json!("$.c.sub"));
    let alg = baton::algorithm::name(idp.signing.algorithm());
    let source = format!(
        r#"
[[keys]]
id = "sbk_bench"
algorithm = "{mint_alg}"
{mint_key}

[[idps]]
issuer = "https://idp.bench"
audience = "app"
algorithms = ["{alg}"]
{}
mapping = {{ {} }}

[[token_providers]]
service = "app"
key = "sbk_bench"
mapping = {{ {} }}
"#,
        idp.config_key,
        inline_table(&idp_mapping),
        inline_table(&provider_mapping),
    );
    Config::from_toml(&source, Path::new("."), &|_| None).unwrap()
}

/// A mapping of strings as TOML inline-table entries (JSON's string escapes are TOML's).
fn inline_table(mapping: &serde_json::Map<String, Value>) -> String {
    mapping
        .iter()
        .map(|(key, value)| format!("{} = {}", Value::from(key.as_str()), value))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The shape of [`worst_mappings`] (`functions`) that made `pipeline/worst-mapping` slowest
/// (`descents` is close; the machine was loaded).
const WORST_SHAPE: usize = 2;

fn worst_mapping_exchanger(idp: &IdpKey, mint_alg: &str, mint_key: &str) -> Exchanger {
    Exchanger::new(
        worst_config(idp, mint_alg, mint_key),
        ExchangerOptions::default(),
    )
    .unwrap()
}

fn hs256_mint_key() -> (&'static str, String) {
    (
        "HS256",
        "secret = \"sbsec_bench_secret_0123456789abcdef\"".to_owned(),
    )
}

fn claims(i: usize) -> Value {
    let now = SystemClock.now_unix();
    json!({
        "iss": "https://idp.bench", "aud": "app", "sub": format!("user-{i}"),
        "email": "someone@example.com", "name": "Some One", "roles": ["admin", "dev"],
        "iat": now, "exp": now + 3600,
    })
}

use baton::clock::Clock as _;

fn sign(key: &SigningKey, claims: &Value) -> String {
    let header =
        json!({ "alg": baton::algorithm::name(key.algorithm()), "kid": "idp", "typ": "JWT" });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{signature}")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn verify(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("verify");
    for alg in [
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
        Algorithm::HS256,
    ] {
        let idp = idp_key(alg);
        let (mint_alg, mint_key) = hs256_mint_key();
        let config = config(&idp, mint_alg, &mint_key);
        let idps = IdpSet::new(config.idps.clone());
        let verifier = Verifier::new(
            JwksCache::new(JwksPolicy::default()).unwrap(),
            Arc::new(SystemClock),
        )
        .unwrap();
        let token = sign(&idp.signing, &claims(0));
        group.bench_function(baton::algorithm::name(alg), |b| {
            b.iter(|| {
                let mut trace = Trace::off();
                rt.block_on(verifier.verify(&idps, black_box(&token), &mut trace))
                    .unwrap()
            });
        });
    }
    group.finish();
}

fn map(c: &mut Criterion) {
    let mapping = json!({
        "sub.$": "$.sub", "email.$": "$.email", "roles.$": "$.roles[*]",
        "tenant.$": "$.org.id", "provider": "auth0"
    });
    let mapper = ClaimMapper::compile(mapping.as_object().unwrap()).unwrap();
    let input = json!({
        "sub": "user-1", "email": "someone@example.com", "roles": ["admin", "dev"],
        "org": { "id": "acme" }, "exp": 1, "iat": 1, "iss": "https://idp", "aud": "app"
    });
    c.bench_function("map/5-keys", |b| b.iter(|| mapper.apply(black_box(&input))));

    let input = worst_claims(0);
    let mut group = c.benchmark_group("map/worst");
    for (name, mapping) in worst_mappings("$") {
        let mapper = ClaimMapper::compile(&mapping).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert!(mapper.apply(&input).is_ok());
        group.bench_function(name, |b| b.iter(|| mapper.apply(black_box(&input))));
    }
    group.finish();
}

/// The claims that make the mappings of [`worst_mappings`] work hardest: `MAX_CLAIM_VALUES`
/// values, an array of 900 small ones (each a filter candidate) beside a chain of arrays
/// as deep as allowed whose innermost holds the rest.
fn worst_claims(i: usize) -> Value {
    let now = SystemClock.now_unix();
    let mut claims = json!({
        "iss": "https://idp.bench", "aud": "app", "sub": format!("user-{i}"),
        "iat": now, "exp": now + 3600,
    });
    let used = 1 + 5 + 1 + 1 + (baton::token::MAX_CLAIMS_DEPTH - 3);
    let rest = baton::token::MAX_CLAIM_VALUES - used - 900;
    let mut deep = json!(vec![1; rest]);
    for _ in 0..baton::token::MAX_CLAIMS_DEPTH - 3 {
        deep = json!([deep]);
    }
    claims["a"] = json!(vec![1; 900]);
    claims["d"] = deep;
    claims
}

/// One mapping per expensive shape, each costing `MAX_MAPPING_COST` (or just under), its
/// paths under `root` (`$` for the IdP mapping, `$.c` for the provider's, which gets the
/// claims in `c`).
fn worst_mappings(root: &str) -> Vec<(&'static str, serde_json::Map<String, Value>)> {
    let cost = baton::mapping::MAX_MAPPING_COST as usize;
    let or = |term: &str, each: usize| vec![term; (cost - 1) / each].join(" || ");
    let one = |path: String| {
        [("w.$".to_owned(), Value::from(path))]
            .into_iter()
            .collect()
    };
    // Several paths, each of a single mapping's entries.
    let many = |path: &dyn Fn(usize) -> String, count: usize| {
        (0..count)
            .map(|i| (format!("w{i}.$"), Value::from(path(i))))
            .collect()
    };
    let max_bytes = baton::mapping::MAX_PATH_BYTES;
    let singular_segments = (max_bytes - root.len() - 2) / 3;
    vec![
        // A pass over 900 candidates, comparing each as many times as allowed.
        (
            "comparisons",
            one(format!("{root}.a[?{}]", or("@ == 0", 1))),
        ),
        ("existence", one(format!("{root}.a[?{}]", or("@.x", 2)))),
        (
            "functions",
            one(format!("{root}.a[?{}]", or("count(@.*) > 1", 3))),
        ),
        (
            "root-queries",
            one(format!("{root}.a[?{}]", or("@ == $.sub", 3))),
        ),
        // Every value a candidate, each looking down as many levels as allowed.
        (
            "descendant-filter",
            one(format!("{root}..[?@{}]", "[*]".repeat(cost - 2))),
        ),
        // One full descent per step.
        ("descents", many(&|i| format!("{root}..x{i}"), cost)),
        // Free paths (names and indexes only), as long as allowed and as many as the
        // mapping's byte bound allows, down the deepest chain.
        (
            "singular-paths",
            many(
                &|_| format!("{root}.d{}", "[0]".repeat(singular_segments)),
                baton::mapping::MAX_MAPPING_PATH_BYTES / max_bytes - 1,
            ),
        ),
    ]
}

fn mint(c: &mut Criterion) {
    let mut group = c.benchmark_group("mint");
    let es256 = keygen::generate(Algorithm::ES256).unwrap();
    let es256_dir = tempfile::tempdir().unwrap();
    let es256_path = es256_dir.path().join("es256.pem");
    std::fs::write(&es256_path, es256.material.expose()).unwrap();
    let idp = idp_key(Algorithm::HS256);
    for (name, mint_alg, mint_key) in [
        ("HS256", "HS256", hs256_mint_key().1),
        (
            "ES256",
            "ES256",
            format!("private_key_file = \"{}\"", es256_path.display()),
        ),
    ] {
        let config = config(&idp, mint_alg, &mint_key);
        let provider = Arc::clone(config.provider("app").unwrap());
        let claims = json!({ "sub": "user-1", "email": "someone@example.com", "roles": ["admin", "dev"], "org": "acme", "name": "Some One" });
        let claims = claims.as_object().unwrap().clone();
        let idp_name: Arc<str> = Arc::from("idp");
        group.bench_function(name, |b| {
            b.iter(|| {
                provider
                    .mint(
                        claims.clone(),
                        u64::MAX,
                        1_800_000_000,
                        Arc::clone(&idp_name),
                    )
                    .unwrap()
            });
        });
    }
    group.finish();
}

fn pipeline(c: &mut Criterion) {
    let rt = runtime();
    let idp = idp_key(Algorithm::RS256);
    let (mint_alg, mint_key) = hs256_mint_key();
    let exchanger = Exchanger::new(
        config(&idp, mint_alg, &mint_key),
        ExchangerOptions::default(),
    )
    .unwrap();
    const DISTINCT: usize = 20_000;
    let tokens: Vec<String> = (0..DISTINCT)
        .map(|i| sign(&idp.signing, &claims(i)))
        .collect();

    let mut group = c.benchmark_group("pipeline");
    let mut next = 0usize;
    group.bench_function("cold/RS256->HS256", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                if next == DISTINCT {
                    // A new generation: every token is a miss again. Not timed.
                    exchanger.reload(config(&idp, mint_alg, &mint_key));
                    next = 0;
                }
                let start = Instant::now();
                let out = rt
                    .block_on(exchanger.exchange(&tokens[next], "app"))
                    .unwrap();
                elapsed += start.elapsed();
                assert!(!out.cached);
                next += 1;
            }
            elapsed
        });
    });
    // The worst mappings allowed, in both stages of a cold exchange, over the worst claims.
    let worst = worst_mapping_exchanger(&idp, mint_alg, &mint_key);
    let worst_tokens: Vec<String> = (0..DISTINCT / 10)
        .map(|i| sign(&idp.signing, &worst_claims(i)))
        .collect();
    assert!(worst_tokens[0].len() <= baton::token::MAX_TOKEN_BYTES);
    let mut next_worst = 0usize;
    group.bench_function("worst-mapping", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                if next_worst == worst_tokens.len() {
                    worst.reload(worst_config(&idp, mint_alg, &mint_key));
                    next_worst = 0;
                }
                let start = Instant::now();
                let out = rt
                    .block_on(worst.exchange(&worst_tokens[next_worst], "app"))
                    .unwrap();
                elapsed += start.elapsed();
                assert!(!out.cached);
                next_worst += 1;
            }
            elapsed
        });
    });
    let warm = &tokens[0];
    rt.block_on(exchanger.exchange(warm, "app")).unwrap();
    group.bench_function("warm/cache-hit", |b| {
        b.iter(|| {
            let out = rt
                .block_on(exchanger.exchange(black_box(warm), "app"))
                .unwrap();
            debug_assert!(out.cached);
            out
        });
    });
    group.finish();

    // The floor of the cold path: RS256 verify + HS256 sign of a like-sized payload, with
    // jsonwebtoken's functions (which re-parse keys per call) and with keys parsed once.
    let token = &tokens[1];
    let (input, signature) = token.rsplit_once('.').unwrap();
    let jwk = idp.signing.public_jwk().unwrap();
    let decoding = DecodingKey::from_jwk(jwk).unwrap();
    let encoding = EncodingKey::from_secret(b"sbsec_bench_secret_0123456789abcdef");
    c.bench_function("baseline/rs256-verify+hs256-sign", |b| {
        b.iter(|| {
            let ok = jsonwebtoken::crypto::verify(
                signature,
                input.as_bytes(),
                &decoding,
                Algorithm::RS256,
            )
            .unwrap();
            assert!(ok);
            jsonwebtoken::crypto::sign(black_box(input.as_bytes()), &encoding, Algorithm::HS256)
                .unwrap()
        });
    });
    let verifier = baton::crypto::Verifier::from_jwk(jwk).unwrap();
    let signer =
        baton::crypto::Signer::hmac(Algorithm::HS256, b"sbsec_bench_secret_0123456789abcdef")
            .unwrap();
    c.bench_function("baseline/rs256-verify+hs256-sign/parsed-keys", |b| {
        b.iter(|| {
            assert!(verifier.verify(Algorithm::RS256, input.as_bytes(), signature));
            signer.sign(black_box(input.as_bytes())).unwrap()
        });
    });
}

/// Compiling the slowest path to parse that the bounds let through to the parser (nested
/// filters as deep as allowed, the innermost failing only at its end, so the parser
/// backtracks through every level), alone and as many times as one mapping may hold.
fn compile(c: &mut Criterion) {
    use baton::mapping::{MAX_MAPPING_PATH_BYTES, MAX_PATH_BYTES, MAX_PATH_NESTING};
    let levels = MAX_PATH_NESTING - 1;
    let term = "@.a==1||";
    let fixed = 1 + 3 * levels + 2 + 1 + levels + 1;
    let terms = (MAX_PATH_BYTES - fixed) / term.len();
    let path = format!(
        "${}[?{}1{}",
        "[?@".repeat(levels),
        term.repeat(terms),
        "]".repeat(levels + 1)
    );
    assert!(path.len() <= MAX_PATH_BYTES);
    let one = json!({ "w.$": path });
    let one = one.as_object().unwrap();
    let many: serde_json::Map<String, Value> = (0..MAX_MAPPING_PATH_BYTES / path.len())
        .map(|i| (format!("w{i}.$"), Value::from(path.as_str())))
        .collect();
    let mut group = c.benchmark_group("compile/worst");
    group.sample_size(10);
    group.bench_function("path", |b| b.iter(|| ClaimMapper::compile(black_box(one))));
    group.bench_function("mapping", |b| {
        b.iter(|| ClaimMapper::compile(black_box(&many)))
    });
    group.finish();
}

criterion_group!(benches, verify, map, mint, pipeline, compile);
criterion_main!(benches);
