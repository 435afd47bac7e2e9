//! What baton's fuzz targets share: a fixed configuration whose IdPs all have static keys (so
//! no input ever reaches the network), a fixed clock, and a current-thread runtime.
//!
//! The targets are in `fuzz_targets/`; `scripts/fuzz.sh` builds and runs them.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use baton::clock::FixedClock;
use baton::config::Config;
use baton::crypto::Signer;
use baton::exchange::{Exchanger, ExchangerOptions};
use baton::metrics::Metrics;
use baton::token::b64url;

/// The fixed clock's time. The seed tokens expire long after it (`exp` 4 000 000 000).
pub const NOW: u64 = 1_800_000_000;

/// The HMAC secret of the `hmac` IdP: inputs signed with it get past the signature check.
pub const IDP_SECRET: &str = "idp-fuzz-secret-0123456789";

/// The secret of baton's own signing key.
pub const MINT_SECRET: &str = "sbsec_fuzz_mint_secret_0123456789";

/// The secret of the `app` provider's client `fuzz-client`.
pub const CLIENT_SECRET: &str = "fuzz-client-secret-0123456789";

/// [`IDP_SECRET`] as [`CONFIG`] writes it (State Backed's `key`: the bytes in base64url).
pub const IDP_KEY: &str = "aWRwLWZ1enotc2VjcmV0LTAxMjM0NTY3ODk";

/// Every secret of [`CONFIG`]: no reply, error or trace may contain one.
pub const SECRETS: [&str; 4] = [IDP_SECRET, IDP_KEY, MINT_SECRET, CLIENT_SECRET];

/// The configuration every exchanging target runs against: three IdPs (HMAC with issuer and
/// audience, Ed25519 by issuer, P-256 by audience) and two providers (State Backed profile
/// with client authentication, RFC 9068 profile without).
pub const CONFIG: &str = r#"
[server]
issuer = "https://baton.fuzz"
org = "org_fuzz"

[proxy]
service = "app"

[[keys]]
id = "sbk_fuzz"
algorithm = "HS256"
secret = "sbsec_fuzz_mint_secret_0123456789"

[[idps]]
name = "hmac"
issuer = "https://idp.fuzz"
audience = "authenticated"
algorithms = ["HS256", "HS384"]
key = "aWRwLWZ1enotc2VjcmV0LTAxMjM0NTY3ODk"  # IDP_SECRET, base64url as State Backed's `key`
leeway = "30s"
mapping = { "sub.$" = "$.sub", "email.$" = "$..email", "roles.$" = "$.app_metadata.roles[*]", "admin.$" = "$.groups[?@ == 'admin']", "first.$" = "$.items[0:2]", provider = "hmac", meta = { "org.$" = "$['org id']" } }

[[idps]]
name = "ed"
issuer = "https://ed.fuzz"
algorithms = ["EdDSA"]
key = "eyJrdHkiOiJPS1AiLCJjcnYiOiJFZDI1NTE5IiwieCI6Ilc3MTFNc1VHYTI4REl0NTdVcU1SQ3BjMjMyLUROQWJacTdSLUJhWEUwQ28ifQ"  # an Ed25519 JWK, base64url
mapping = { "sub.$" = "$.sub", "scope.$" = "$.scope", provider = "ed" }

[[idps]]
name = "p256"
audience = "p256-aud"
algorithms = ["ES256"]
key = "LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0KTUZrd0V3WUhLb1pJemowQ0FRWUlLb1pJemowREFRY0RRZ0FFdGRYd0w5bk1JZktsemVPTjI2L2ltQ3Iyc0RoMAp0UHowYlczQ1k4V2NDaHFCeGFHSWhjZ1J0TnFId2M2WmNIUTVJeVY5eVFRREljM3dSdkQ2azdVaklRPT0KLS0tLS1FTkQgUFVCTElDIEtFWS0tLS0tCg"  # a P-256 public key PEM, base64url
mapping = { "sub.$" = "$.sub" }

[[token_providers]]
service = "app"
key = "sbk_fuzz"
ttl = "15m"
mapping = { "user.$" = "$.sub", "roles.$" = "$.roles", "provider.$" = "$.provider", "deep.$" = "$.meta.org" }
clients = [{ id = "fuzz-client", secret = "fuzz-client-secret-0123456789" }]

[[token_providers]]
service = "api"
key = "sbk_fuzz"
profile = "access_token"
audience = "https://api.fuzz"
mapping = { "sub.$" = "$.sub", "email.$" = "$.email", scope = "read" }
"#;

/// The shared runtime, exchanger and metrics, built once per process.
#[derive(Debug)]
pub struct Fixture {
    runtime: tokio::runtime::Runtime,
    exchanger: Arc<Exchanger>,
    metrics: Metrics,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(Fixture::build);

/// The process's [`Fixture`].
pub fn fixture() -> &'static Fixture {
    &FIXTURE
}

/// [`CONFIG`], validated. Panics if the fixture itself is invalid (a bug in this file).
pub fn config() -> Config {
    Config::from_toml(CONFIG, Path::new("."), &|_| None).expect("the fuzz fixture config is valid")
}

/// `header.payload.signature` with both parts base64url-encoded as given and an HS256
/// signature under [`IDP_SECRET`]: how a fuzzed header and payload get past the signature.
pub fn sign_hs256(header: &[u8], payload: &[u8]) -> String {
    let alg = baton::algorithm::parse("HS256").expect("HS256 is an algorithm");
    let signer = Signer::hmac(alg, IDP_SECRET.as_bytes()).expect("an HMAC key from any bytes");
    let input = format!("{}.{}", b64url(header), b64url(payload));
    let signature = signer
        .sign(input.as_bytes())
        .expect("HMAC signing cannot fail");
    format!("{input}.{}", b64url(&signature))
}

/// Panics when `text` contains one of [`SECRETS`] that `input` does not: `what` names
/// where it was found. A secret the input holds may be echoed (a header's `alg` is named in
/// an error) — libFuzzer learns the secrets from this very check's comparisons.
pub fn assert_no_secret(what: &str, text: &str, input: &[u8]) {
    for secret in SECRETS {
        let in_input = input
            .windows(secret.len())
            .any(|window| window == secret.as_bytes());
        assert!(
            in_input || !text.contains(secret),
            "{what} contains a secret: {text}"
        );
    }
}

/// `token`'s bytes followed by each of its dot-separated segments base64url-decoded: what
/// an answer about the token may echo.
pub fn token_views(token: &str) -> Vec<u8> {
    let mut views = token.as_bytes().to_vec();
    for segment in token.split('.') {
        if let Ok(decoded) = URL_SAFE_NO_PAD.decode(segment) {
            views.push(b'\n');
            views.extend(decoded);
        }
    }
    views
}

// === impl Fixture ===

impl Fixture {
    fn build() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
        let exchanger = {
            let _entered = runtime.enter();
            Exchanger::new(
                config(),
                ExchangerOptions {
                    clock: Arc::new(FixedClock(NOW)),
                    ..ExchangerOptions::default()
                },
            )
            .expect("the exchanger of the fuzz fixture")
        };
        let exchanger = Arc::new(exchanger);
        let metrics = Metrics::new(Arc::clone(&exchanger));
        Self {
            runtime,
            exchanger,
            metrics,
        }
    }

    /// Runs `future` to completion on the fixture's runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The exchanger over [`CONFIG`].
    pub fn exchanger(&self) -> &Exchanger {
        &self.exchanger
    }

    /// The metrics `sts::handle` records into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Empties the minted-token cache (a reload starts a new generation), so that an input
    /// that minted a token takes the same path when it runs again: libFuzzer wants a target
    /// to be deterministic.
    pub fn forget_minted(&self) {
        self.exchanger.reload(config());
    }
}
