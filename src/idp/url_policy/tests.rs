use super::*;

use UrlPolicy::{HttpsOrLoopback, InsecureHttpAllowed};

fn url(text: &str) -> Url {
    Url::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn urls(texts: &[&str]) -> Vec<Url> {
    texts.iter().map(|t| url(t)).collect()
}

#[test]
fn https_is_always_allowed() {
    for policy in [HttpsOrLoopback, InsecureHttpAllowed] {
        assert_eq!(check_url(&url("https://idp.example/jwks"), policy), Ok(()));
        assert_eq!(check_url(&url("https://127.0.0.1/jwks"), policy), Ok(()));
    }
}

#[test]
fn plain_http_only_to_loopback_by_default() {
    for loopback in [
        "http://127.0.0.1:8080/jwks",
        "http://127.1.2.3/jwks",
        "http://localhost:9000/jwks",
        "http://LOCALHOST/jwks",
        "http://[::1]:8080/jwks",
        "http://[::ffff:127.0.0.1]/jwks",
        // The URL parser reads these as 127.0.0.1.
        "http://2130706433/jwks",
        "http://0x7f.1/jwks",
    ] {
        assert_eq!(
            check_url(&url(loopback), HttpsOrLoopback),
            Ok(()),
            "{loopback}"
        );
    }
    for remote in [
        "http://idp.example/jwks",
        "http://192.0.2.1/jwks",
        "http://10.0.0.1/jwks",
        "http://0.0.0.0:8080/jwks",
        "http://[::]:8080/jwks",
        "http://[::ffff:10.0.0.1]/jwks",
        // Names are not resolved: these may point anywhere.
        "http://localhost.idp.example/jwks",
        "http://idp.localhost/jwks",
        "http://localhost./jwks",
        "http://127.0.0.1.nip.io/jwks",
    ] {
        assert_eq!(
            check_url(&url(remote), HttpsOrLoopback),
            Err(UrlRefusal::PlainHttp),
            "{remote}"
        );
        assert_eq!(
            check_url(&url(remote), InsecureHttpAllowed),
            Ok(()),
            "{remote}"
        );
    }
}

#[test]
fn other_schemes_are_refused_whatever_the_policy() {
    for policy in [HttpsOrLoopback, InsecureHttpAllowed] {
        for (text, scheme) in [
            ("file:///etc/passwd", "file"),
            ("ftp://127.0.0.1/jwks", "ftp"),
            ("data:application/json,{}", "data"),
        ] {
            assert_eq!(
                check_url(&url(text), policy),
                Err(UrlRefusal::UnsupportedScheme(scheme.to_owned()))
            );
        }
    }
}

#[test]
fn the_refusal_names_the_rule_and_the_way_out() {
    assert_eq!(
        UrlRefusal::PlainHttp.to_string(),
        "must be https (or a loopback address) unless allow_http = true"
    );
    let refused = RedirectRefused {
        to: "http://192.0.2.1/jwks".to_owned(),
        reason: UrlRefusal::PlainHttp,
    };
    assert_eq!(
        refused.to_string(),
        "redirect to http://192.0.2.1/jwks refused: must be https (or a loopback address) unless allow_http = true"
    );
}

#[test]
fn three_redirects_are_followed_a_fourth_is_not() {
    let chain = urls(&[
        "https://idp.example/0",
        "https://idp.example/1",
        "https://idp.example/2",
        "https://idp.example/3",
    ]);
    let next = url("https://idp.example/next");
    for policy in [HttpsOrLoopback, InsecureHttpAllowed] {
        // `previous` holds the first URL and the redirects followed so far.
        for followed in 1..=MAX_REDIRECTS {
            assert_eq!(
                check_redirect(&chain[..followed], &next, policy),
                Ok(()),
                "redirect number {followed}"
            );
        }
        assert_eq!(
            check_redirect(&chain[..=MAX_REDIRECTS], &next, policy),
            Err(UrlRefusal::TooManyRedirects)
        );
    }
}

#[test]
fn each_hop_is_checked_by_the_url_rule() {
    let from_loopback = urls(&["http://127.0.0.1:8080/jwks"]);
    assert_eq!(
        check_redirect(
            &from_loopback,
            &url("http://localhost:9/jwks"),
            HttpsOrLoopback
        ),
        Ok(())
    );
    assert_eq!(
        check_redirect(
            &from_loopback,
            &url("https://idp.example/jwks"),
            HttpsOrLoopback
        ),
        Ok(())
    );
    assert_eq!(
        check_redirect(
            &from_loopback,
            &url("http://192.0.2.1/jwks"),
            HttpsOrLoopback
        ),
        Err(UrlRefusal::PlainHttp)
    );
    assert_eq!(
        check_redirect(
            &from_loopback,
            &url("http://192.0.2.1/jwks"),
            InsecureHttpAllowed
        ),
        Ok(())
    );
    assert_eq!(
        check_redirect(
            &from_loopback,
            &url("file:///etc/passwd"),
            InsecureHttpAllowed
        ),
        Err(UrlRefusal::UnsupportedScheme("file".to_owned()))
    );
}

#[test]
fn https_never_redirects_to_http_even_with_allow_http_or_to_loopback() {
    for policy in [HttpsOrLoopback, InsecureHttpAllowed] {
        for next in ["http://idp.example/jwks", "http://127.0.0.1/jwks"] {
            assert_eq!(
                check_redirect(&urls(&["https://idp.example/jwks"]), &url(next), policy),
                Err(UrlRefusal::Downgrade),
                "{next}"
            );
            // Nor back to http later in the chain.
            assert_eq!(
                check_redirect(
                    &urls(&["http://127.0.0.1/a", "https://idp.example/b"]),
                    &url(next),
                    policy
                ),
                Err(UrlRefusal::Downgrade),
                "{next}"
            );
        }
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// A machine whose addresses are the loopbacks and 10.0.0.5.
fn local(ip: IpAddr) -> bool {
    ip.is_loopback() || ip == IpAddr::from([10, 0, 0, 5])
}

#[test]
fn a_specific_listener_is_reached_by_its_own_address_only() {
    let listener = addr("127.0.0.1:9901");
    assert!(reaches_listener(addr("127.0.0.1:9901"), listener, local));
    assert!(reaches_listener(
        addr("[::ffff:127.0.0.1]:9901"),
        listener,
        local
    ));
    // Connecting to the unspecified address connects to this machine.
    assert!(reaches_listener(addr("0.0.0.0:9901"), listener, local));
    assert!(reaches_listener(addr("[::]:9901"), listener, local));
    assert!(!reaches_listener(addr("127.0.0.2:9901"), listener, local));
    assert!(!reaches_listener(addr("[::1]:9901"), listener, local));
    assert!(!reaches_listener(addr("127.0.0.1:9902"), listener, local));
}

#[test]
fn a_wildcard_listener_is_reached_by_every_local_address() {
    for listener in [addr("0.0.0.0:8080"), addr("[::]:8080")] {
        for target in [
            "127.0.0.1:8080",
            "127.0.0.2:8080",
            "[::1]:8080",
            "10.0.0.5:8080",
            "0.0.0.0:8080",
            "[::ffff:10.0.0.5]:8080",
        ] {
            assert!(
                reaches_listener(addr(target), listener, local),
                "{target} -> {listener}"
            );
        }
        assert!(!reaches_listener(addr("10.0.0.6:8080"), listener, local));
        assert!(!reaches_listener(addr("127.0.0.1:8081"), listener, local));
    }
}

#[test]
fn own_listener_reads_the_url_s_host_and_default_port() {
    let listeners = [
        ("proxy", addr("127.0.0.1:80")),
        ("admin", addr("127.0.0.1:9901")),
    ];
    let found = |text: &str| own_listener(&url(text), &listeners).map(|(name, _)| *name);
    assert_eq!(found("http://127.0.0.1/jwks"), Some("proxy"));
    assert_eq!(
        found("http://127.0.0.1:80/.well-known/jwks.json"),
        Some("proxy")
    );
    assert_eq!(found("http://localhost/jwks"), Some("proxy"));
    assert_eq!(found("http://[::ffff:127.0.0.1]:9901/idps"), Some("admin"));
    assert_eq!(found("http://0.0.0.0:9901/"), Some("admin"));
    assert_eq!(found("https://127.0.0.1:9901/"), Some("admin"));
    // https's default port is 443; nothing listens there.
    assert_eq!(found("https://127.0.0.1/jwks"), None);
    assert_eq!(found("http://127.0.0.1:8080/jwks"), None);
    assert_eq!(found("http://192.0.2.1/jwks"), None);
    assert_eq!(found("http://does-not-resolve.invalid/jwks"), None);
}
