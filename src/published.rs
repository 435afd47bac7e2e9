//! Documents baton publishes: its JWKS and its RFC 8414 authorization-server metadata.

use serde_json::{Value, json};

use crate::config::Config;
use crate::sts::{GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN};

/// `{"keys": [...]}`: the public halves of the asymmetric signing keys, retired ones
/// included (tokens they signed are still in flight). HMAC keys are never published.
pub fn jwks(config: &Config) -> Value {
    let keys: Vec<Value> = config
        .keys
        .iter()
        .filter_map(|key| key.public_jwk())
        .filter_map(|jwk| serde_json::to_value(jwk).ok())
        .collect();
    json!({ "keys": keys })
}

/// RFC 8414 metadata naming the issuer, the token endpoint, the JWKS and the
/// token-exchange grant.
pub fn metadata(config: &Config) -> Value {
    let server = &config.server;
    let mut doc = json!({
        "issuer": server.issuer,
        "grant_types_supported": [GRANT_TYPE_TOKEN_EXCHANGE],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "issued_token_types_supported": [TOKEN_TYPE_ACCESS_TOKEN],
    });
    if let Some(path) = &server.tokens_path {
        doc["token_endpoint"] = json!(format!("{}{path}", server.public_url));
    }
    if let Some(path) = &server.jwks_path {
        doc["jwks_uri"] = json!(format!("{}{path}", server.public_url));
    }
    doc
}
