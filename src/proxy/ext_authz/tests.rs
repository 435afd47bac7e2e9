use envoy_types::pb::envoy::config::core::v3::HeaderMap as EnvoyHeaderMap;

use super::*;

fn http_request(method: &str, path: &str, headers: &[(&str, &str)]) -> HttpRequest {
    HttpRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        headers: headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect(),
        ..HttpRequest::default()
    }
}

fn values<'h>(headers: &'h HeaderMap, name: &str) -> Vec<&'h str> {
    headers
        .get_all(name)
        .iter()
        .map(|value| value.to_str().unwrap())
        .collect()
}

#[test]
fn the_headers_map_becomes_an_http1_request_without_pseudo_headers() {
    let mut http = http_request(
        "POST",
        "/api/x?y=1",
        &[
            (":authority", "app.example"),
            (":path", "/elsewhere"),
            ("authorization", "Bearer abc"),
            ("x-team", "ops"),
        ],
    );
    http.host = "app.example".to_owned();
    let original = original_request(&http).unwrap();
    assert_eq!(original.method, Method::POST);
    assert_eq!(original.uri, "/api/x?y=1");
    assert_eq!(original.version, Version::HTTP_11);
    assert_eq!(values(&original.headers, "authorization"), ["Bearer abc"]);
    assert_eq!(values(&original.headers, "x-team"), ["ops"]);
    // `host` from the request's `host`, as an HTTP/1.1 request would carry it.
    assert_eq!(values(&original.headers, "host"), ["app.example"]);
    assert_eq!(original.headers.len(), 3, "{:?}", original.headers);
}

#[test]
fn header_map_lines_are_read_instead_of_the_map_with_repeated_names_kept_apart() {
    let mut http = http_request("GET", "/api", &[("x-from-map", "ignored")]);
    let line = |key: &str, value: &str, raw: &[u8]| EnvoyHeader {
        key: key.to_owned(),
        value: value.to_owned(),
        raw_value: raw.to_vec(),
    };
    http.header_map = Some(EnvoyHeaderMap {
        headers: vec![
            line("authorization", "", b"Bearer one"),
            line("authorization", "", b"Bearer two"),
            line("x-plain", "text", b""),
            line(":method", "", b"GET"),
        ],
    });
    let original = original_request(&http).unwrap();
    assert_eq!(
        values(&original.headers, "authorization"),
        ["Bearer one", "Bearer two"]
    );
    assert_eq!(values(&original.headers, "x-plain"), ["text"]);
    assert!(!original.headers.contains_key("x-from-map"));
    assert_eq!(original.headers.len(), 3);
}

#[test]
fn a_check_without_a_readable_original_is_refused() {
    for (what, http) in [
        ("no method", http_request("", "/api", &[])),
        ("a bad method", http_request("G T", "/api", &[])),
        ("no path", http_request("GET", "", &[])),
        ("a bad path", http_request("GET", "/a b", &[])),
        (
            "a bad header name",
            http_request("GET", "/api", &[("bad name", "x")]),
        ),
        (
            "a bad header value",
            http_request("GET", "/api", &[("x-bad", "a\nb")]),
        ),
    ] {
        assert_eq!(
            original_request(&http).unwrap_err(),
            RequestRefused::NoOriginalRequest,
            "{what}"
        );
    }
}

fn line_of(option: &HeaderValueOption) -> (&str, &str) {
    let header = option.header.as_ref().unwrap();
    (header.key.as_str(), header.value.as_str())
}

#[test]
#[allow(deprecated)] // the deprecated `append` is part of what is checked
fn an_allowed_check_overwrites_what_it_sets_and_removes_the_rest() {
    let verdict = Verdict {
        set: vec![
            (
                header::AUTHORIZATION,
                HeaderValue::from_static("Bearer minted"),
            ),
            (
                HeaderName::from_static("x-user"),
                HeaderValue::from_static("alice"),
            ),
        ],
        remove: vec![HeaderName::from_static("x-team")],
    };
    let response = allowed(verdict);
    assert_eq!(response.status.unwrap().code, 0);
    let Some(HttpResponse::OkResponse(ok)) = response.http_response else {
        panic!("not an OkResponse");
    };
    let set: Vec<_> = ok.headers.iter().map(line_of).collect();
    assert_eq!(
        set,
        [("authorization", "Bearer minted"), ("x-user", "alice")]
    );
    for option in &ok.headers {
        assert_eq!(
            option.append_action,
            HeaderAppendAction::OverwriteIfExistsOrAdd as i32
        );
        assert_eq!(option.append, Some(BoolValue { value: false }));
    }
    assert_eq!(ok.headers_to_remove, ["x-team"]);
}

#[test]
fn a_refusal_is_denied_with_its_status_challenge_and_body() {
    let refusal = auth::refusal(&RequestRefused::MissingToken);
    let body = String::from_utf8(refusal.http.body.clone()).unwrap();
    let response = denied(refusal);
    let status = response.status.unwrap();
    assert_eq!(status.code, 16, "UNAUTHENTICATED");
    assert_eq!(status.message, "a bearer token is required");
    let Some(HttpResponse::DeniedResponse(denied)) = response.http_response else {
        panic!("not a DeniedResponse");
    };
    assert_eq!(denied.status.unwrap().code, 401);
    let lines: Vec<_> = denied.headers.iter().map(line_of).collect();
    assert!(
        lines.contains(&("www-authenticate", "Bearer realm=\"baton\"")),
        "{lines:?}"
    );
    assert!(
        lines.contains(&("content-type", "application/json")),
        "{lines:?}"
    );
    assert_eq!(denied.body, body);
    assert!(
        denied.body.contains("\"invalid_request\""),
        "{}",
        denied.body
    );
}
