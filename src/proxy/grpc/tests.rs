use http::HeaderValue;

use super::*;

fn headers_with_content_type(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
    headers
}

#[test]
fn grpc_content_types_are_grpc_calls_and_lookalikes_are_not() {
    for grpc in [
        "application/grpc",
        "application/grpc+proto",
        "application/grpc+json",
        "application/grpc;charset=utf-8",
        "Application/GRPC+proto",
    ] {
        assert!(is_grpc(&headers_with_content_type(grpc)), "{grpc}");
    }
    for other in [
        "application/grpc-web",
        "application/grpc-web+proto",
        "application/grpcx",
        "application/json",
        "text/plain",
        "application/gr",
        "",
    ] {
        assert!(!is_grpc(&headers_with_content_type(other)), "{other:?}");
    }
    assert!(!is_grpc(&HeaderMap::new()), "no content-type");
}

#[test]
fn http_statuses_map_to_grpc_codes_as_grpc_and_envoy_map_them() {
    let table = [
        (400, 13),
        (401, 16),
        (403, 7),
        (404, 12),
        (429, 14),
        (502, 14),
        (503, 14),
        (504, 14),
        (500, 2),
        (405, 2),
        (413, 2),
        (200, 2),
    ];
    for (status, code) in table {
        assert_eq!(code_for_status(status) as u8, code, "HTTP {status}");
    }
}

#[test]
fn ext_authz_denials_take_the_grpc_codes_but_a_400_is_an_invalid_argument() {
    let table = [
        (400, 3),
        (401, 16),
        (403, 7),
        (404, 12),
        (503, 14),
        (500, 2),
    ];
    for (status, code) in table {
        assert_eq!(code_for_denial(status) as u8, code, "HTTP {status}");
    }
}

#[test]
fn percent_encoding_leaves_visible_ascii_and_encodes_the_rest_and_percent() {
    assert_eq!(
        percent_encode("the token has expired"),
        "the token has expired"
    );
    assert_eq!(percent_encode("100% sure"), "100%25 sure");
    assert_eq!(percent_encode("a\tb\nc\r"), "a%09b%0Ac%0D");
    assert_eq!(percent_encode("\u{7f}"), "%7F");
    // UTF-8 bytes, upper-case hex, as PROTOCOL-HTTP2.md's example ("%E2%82%AC" for €).
    assert_eq!(percent_encode("caf\u{e9} \u{20ac}"), "caf%C3%A9 %E2%82%AC");
    assert_eq!(
        percent_encode(" ~!\"#$&'()*+,-./:;<=>?@[\\]^_`{|}"),
        " ~!\"#$&'()*+,-./:;<=>?@[\\]^_`{|}"
    );
    assert_eq!(percent_encode(""), "");
}

#[test]
fn a_refusal_becomes_a_trailers_only_answer_that_keeps_only_the_challenge() {
    let http = Reply::oauth_error(401, "invalid_token", "the token has expired").with_header(
        "www-authenticate",
        "Bearer realm=\"baton\", error=\"invalid_token\"",
    );
    let grpc = trailers_only(&http, "the token has expired");
    assert_eq!(grpc.status, 200);
    assert!(grpc.body.is_empty(), "trailers-only: no body");
    let header = |name: &str| {
        let values: Vec<&str> = grpc
            .headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        assert!(values.len() <= 1, "{name}: {values:?}");
        values.first().copied()
    };
    assert_eq!(header("content-type"), Some("application/grpc"));
    assert_eq!(header("grpc-status"), Some("16"));
    assert_eq!(header("grpc-message"), Some("the token has expired"));
    assert_eq!(
        header("www-authenticate"),
        Some("Bearer realm=\"baton\", error=\"invalid_token\"")
    );
    assert_eq!(header("cache-control"), None);
    assert_eq!(grpc.headers.len(), 4, "{:?}", grpc.headers);
}

#[test]
fn an_upstream_timeout_is_unavailable_and_its_message_encoded() {
    let http = Reply::oauth_error(504, "gateway_timeout", "ignored");
    let grpc = trailers_only(&http, "timed out: 100%");
    assert!(
        grpc.headers
            .iter()
            .any(|(n, v)| *n == "grpc-status" && v == "14")
    );
    assert!(
        grpc.headers
            .iter()
            .any(|(n, v)| *n == "grpc-message" && v == "timed out: 100%25")
    );
    assert!(!grpc.headers.iter().any(|(n, _)| *n == "www-authenticate"));
}
