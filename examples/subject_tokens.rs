//! Writes an IdP key and signed subject tokens for the load scripts in `bench/`:
//!
//! ```sh
//! cargo run --release --example subject_tokens -- OUT_DIR COUNT [ISSUER] [AUDIENCE]
//! ```
//!
//! `OUT_DIR/idp.jwk` is the IdP's public JWK, `OUT_DIR/tokens.txt` holds COUNT distinct
//! RS256 tokens (one per line, valid for two hours), `OUT_DIR/token.txt` the first one.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use baton::mint::keys::SigningKey;
use jsonwebtoken::Algorithm;
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: subject_tokens OUT_DIR COUNT [ISSUER] [AUDIENCE]";
    let dir = PathBuf::from(args.next().ok_or(usage)?);
    let count: usize = args.next().ok_or(usage)?.parse()?;
    let issuer = args
        .next()
        .unwrap_or_else(|| "https://idp.bench".to_owned());
    let audience = args.next().unwrap_or_else(|| "app".to_owned());
    std::fs::create_dir_all(&dir)?;

    let generated = baton::keygen::generate(Algorithm::RS256)?;
    let key =
        SigningKey::from_private_pem("bench-idp", Algorithm::RS256, generated.material.expose())?;
    std::fs::write(
        dir.join("idp.jwk"),
        serde_json::to_string(key.public_jwk().ok_or("no JWK")?)?,
    )?;

    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let header = URL_SAFE_NO_PAD
        .encode(json!({ "alg": "RS256", "kid": "bench-idp", "typ": "JWT" }).to_string());
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = count.div_ceil(threads);
    let tokens: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (key, header, issuer, audience) = (&key, &header, &issuer, &audience);
                scope.spawn(move || {
                    (t * chunk..((t + 1) * chunk).min(count))
                        .map(|i| {
                            let claims = json!({
                                "iss": issuer, "aud": audience, "sub": format!("user-{i}"),
                                "email": format!("user-{i}@example.com"), "roles": ["reader"],
                                "iat": now, "exp": now + 7200,
                            });
                            let input =
                                format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
                            let signature = key.sign(input.as_bytes()).expect("signing works");
                            format!("{input}.{signature}")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect()
    });
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("tokens.txt"))?);
    for token in &tokens {
        writeln!(out, "{token}")?;
    }
    std::fs::write(dir.join("token.txt"), &tokens[0])?;
    eprintln!("wrote {} tokens to {}", tokens.len(), dir.display());
    Ok(())
}
