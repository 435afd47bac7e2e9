//! `POST /tokens`: `sts::handle`, the endpoint the proxy calls, with a fuzzed `Content-Type`,
//! `Authorization` and body (form or JSON parameters, RFC 8693 checks, target service,
//! client authentication, then the exchange) against the fixture's config.
//!
//! Input: `CONTENT-TYPE \n AUTHORIZATION \n BODY`; an empty line is an absent header.

#![no_main]

use baton::sts::{Reply, TokenRequest, handle};
use baton_fuzz::{assert_no_secret, fixture};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let mut lines = data.splitn(3, |b| *b == b'\n');
    let content_type = String::from_utf8_lossy(lines.next().unwrap_or_default());
    let authorization = String::from_utf8_lossy(lines.next().unwrap_or_default());
    let body = lines.next().unwrap_or_default();
    let request = TokenRequest {
        method: "POST",
        content_type: Some(content_type.as_ref()).filter(|v| !v.is_empty()),
        authorization: Some(authorization.as_ref()).filter(|v| !v.is_empty()),
        origin: None,
        body,
    };

    let fixture = fixture();
    let reply = fixture.block_on(handle(fixture.exchanger(), fixture.metrics(), &request));
    check_reply(&reply, body);
    if reply.status == 200 {
        // The next run of this input would be a cache hit: keep the target deterministic.
        fixture.forget_minted();
    }
});

/// Every reply is a JSON object with the no-store headers, an OAuth error unless it is a
/// 200 with a token, and never holds a secret or the subject token.
fn check_reply(reply: &Reply, body: &[u8]) {
    assert!(
        matches!(reply.status, 200 | 400 | 401 | 403 | 413 | 415),
        "unexpected status {}",
        reply.status
    );
    for (name, value) in [("cache-control", "no-store"), ("pragma", "no-cache")] {
        assert!(
            reply.headers.iter().any(|(n, v)| *n == name && v == value),
            "the reply lacks {name}: {value}"
        );
    }
    assert_eq!(reply.content_type, "application/json");
    let text = std::str::from_utf8(&reply.body).expect("a reply body is UTF-8");
    // Replies are fixed texts and baton's own token: nothing of the request is echoed, so
    // a secret is a leak even when the request holds it.
    assert_no_secret("a /tokens reply", text, b"");
    let json: Value = serde_json::from_str(text).expect("a reply body is JSON");
    if reply.status == 200 {
        assert!(
            json["access_token"].is_string(),
            "a 200 without a token: {text}"
        );
        assert_eq!(json["token_type"], "Bearer");
    } else {
        assert!(
            json["error"].is_string(),
            "an error reply without `error`: {text}"
        );
    }
    for token in subject_tokens(body) {
        assert!(
            !text.contains(&token),
            "the reply holds the subject token: {text}"
        );
    }
}

/// The body's `subject_token` values that look like JWTs (two dots, 24 bytes or more): such a
/// string cannot be part of a fixed error text, so finding it in a reply means it was echoed.
fn subject_tokens(body: &[u8]) -> Vec<String> {
    let mut found: Vec<String> = form_urlencoded_pairs(body);
    if let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body)
        && let Some(Value::String(token)) = object.get("subject_token")
    {
        found.push(token.clone());
    }
    found.retain(|t| t.len() >= 24 && t.matches('.').count() >= 2);
    found
}

fn form_urlencoded_pairs(body: &[u8]) -> Vec<String> {
    // The form parser is the endpoint's own dependency; split by hand so that this check
    // does not share its bugs.
    body.split(|b| *b == b'&')
        .filter_map(|pair| pair.strip_prefix(b"subject_token="))
        .map(|value| {
            let value = String::from_utf8_lossy(value).replace('+', " ");
            percent_decode(&value)
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            #[allow(clippy::cast_possible_truncation)] // two hex digits fit a byte
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
