//! The request and response as they cross baton: hop-by-hop headers removed (RFC 9110
//! §7.6.1), `X-Forwarded-*` set, `Host` kept or supplied, and an HTTP/1.1 upgrade's tunnel.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::header::{self, HeaderName};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::Downstream;
use super::policy::{self, Admitted};
use super::upstream::Target;
use crate::config::ProxyConfig;
use crate::errors::UpstreamFailure;

/// Fields that describe one hop and are never forwarded (RFC 9110 §7.6.1), besides the
/// names `Connection` lists. `Upgrade` (and `Connection: upgrade`) is put back on an upgrade.
/// `TE` goes too: an HTTP/1.1 upstream is asked for no transfer coding, trailers included
/// (hyper's client reads what the upstream sends either way); an h2c upstream gets
/// `TE: trailers` back when the client sent it. A `static`: a `const` array of names would be
/// built and dropped at every use, and it is read once per header of every message.
static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The two halves of an upgraded connection, once both sides have switched protocols.
#[derive(Debug)]
pub(super) struct Upgrades {
    downstream: OnUpgrade,
    upstream: OnUpgrade,
}

/// Counts an open tunnel while it lives (dropped when it ends or its task is cancelled).
struct OpenTunnel(Arc<AtomicUsize>);

/// Turns the client's request head into the upstream's: `admitted`'s `Authorization` and
/// claim headers are set, hop-by-hop fields go, `X-Forwarded-*` are set, the target becomes
/// `target`'s. Returns the client side of an upgrade when the request asks for one.
pub(super) fn prepare_request(
    parts: &mut Parts,
    admitted: Admitted,
    downstream: Downstream,
    proxy: &ProxyConfig,
    target: &Target,
) -> Option<OnUpgrade> {
    // An HTTP/1.1 upgrade has no HTTP/2 equivalent toward the upstream (RFC 9113 §8.6).
    let upgrade =
        parts.version == Version::HTTP_11 && !target.is_h2c() && asks_for_upgrade(&parts.headers);
    // `TE: trailers` is the one `TE` HTTP/2 allows (RFC 9113 §8.2.2), and gRPC servers
    // require it: kept toward an h2c upstream when the client sent it.
    let trailers = target.is_h2c() && accepts_trailers(&parts.headers);
    let downstream_upgrade = if upgrade {
        parts.extensions.remove::<OnUpgrade>()
    } else {
        None
    };
    // What the listener attached is for this hop only.
    parts.extensions.clear();
    remove_hop_by_hop(&mut parts.headers, downstream_upgrade.is_some());
    if trailers {
        parts
            .headers
            .insert(header::TE, HeaderValue::from_static("trailers"));
    }
    policy::apply(&mut parts.headers, admitted);
    // With traces on, the upstream's spans are children of this request's.
    crate::traces::inject(&mut parts.headers);
    // An HTTP/2 request names its host in `:authority` (RFC 9113 §8.3.1): the app, speaking
    // HTTP/1.1, gets it as `Host`.
    if parts.version == Version::HTTP_2
        && !parts.headers.contains_key(header::HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(header::HOST, host);
    }
    forwarded_headers(
        &mut parts.headers,
        downstream,
        proxy.trust_forwarded_headers,
    );
    // An HTTP/1.0 request may come without `Host`; the app gets the authority baton
    // connects to rather than none (HTTP/1.1 requires one, RFC 9112 §3.2).
    if !parts.headers.contains_key(header::HOST) {
        parts.headers.insert(header::HOST, target.host().clone());
    }
    parts.uri = target.uri_for(&parts.uri);
    if target.is_h2c() {
        // The stream's `:authority` is the upstream's address; the client's `Host` reaches
        // the app as `X-Forwarded-Host` (a `Host` unlike `:authority` is malformed HTTP/2,
        // RFC 9113 §8.3.1).
        parts.headers.remove(header::HOST);
        parts.version = Version::HTTP_2;
    } else {
        parts.version = Version::HTTP_11;
    }
    downstream_upgrade
}

/// Readies the upstream's response for the client: hop-by-hop fields go, except on a
/// `101 Switching Protocols` that answers the client's upgrade, whose two halves are returned
/// to be joined. A 101 the client did not ask for is the upstream's fault.
pub(super) fn prepare_response(
    response: &mut Response<Incoming>,
    downstream_upgrade: Option<OnUpgrade>,
) -> Result<Option<Upgrades>, UpstreamFailure> {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        remove_hop_by_hop(response.headers_mut(), false);
        return Ok(None);
    }
    let Some(downstream) = downstream_upgrade else {
        return Err(UpstreamFailure::InvalidAnswer);
    };
    let upstream = hyper::upgrade::on(&mut *response);
    remove_hop_by_hop(response.headers_mut(), true);
    Ok(Some(Upgrades {
        downstream,
        upstream,
    }))
}

/// Once both sides have switched protocols, copies bytes between them until either closes.
/// `open` counts the tunnel meanwhile (draining waits for it).
pub(super) fn spawn_tunnel(upgrades: Upgrades, open: Arc<AtomicUsize>) {
    open.fetch_add(1, Ordering::AcqRel);
    let open = OpenTunnel(open);
    tokio::spawn(async move {
        let _open = open;
        let (downstream, upstream) = match tokio::join!(upgrades.downstream, upgrades.upstream) {
            (Ok(downstream), Ok(upstream)) => (downstream, upstream),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(error = %e, "an upgrade did not complete");
                return;
            }
        };
        let (mut downstream, mut upstream) = (TokioIo::new(downstream), TokioIo::new(upstream));
        if let Err(e) = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await {
            tracing::debug!(error = %e, "an upgraded connection ended with an error");
        }
    });
}

/// Whether `Connection` holds the `upgrade` option and an `Upgrade` field names a protocol
/// (RFC 9110 §7.8).
fn asks_for_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && connection_options(headers).any(|option| option.eq_ignore_ascii_case("upgrade"))
}

/// Whether `TE` lists `trailers` (RFC 9110 §10.1.4).
fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            coding
                .split(';')
                .next()
                .is_some_and(|name| name.trim().eq_ignore_ascii_case("trailers"))
        })
}

/// The options of every `Connection` line.
fn connection_options(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|option| !option.is_empty())
}

/// Removes hop-by-hop fields: [`HOP_BY_HOP`] and what `Connection` names (never `Host`).
/// With `upgrade`, the `Upgrade` field stays and `Connection` says `upgrade`.
fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // One pass over the (few) fields, noting which hop-by-hop names are there, rather than a
    // lookup per name: most requests hold none, and most responses only `Connection`.
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(index) = hop_by_hop_index(name) {
            present |= 1 << index;
        }
    }
    if present == 0 {
        return;
    }
    // `Connection: keep-alive` (or `close`, `upgrade`) names nothing beyond the fields removed
    // anyway: a name is only made for the rare other option.
    let listed: Vec<HeaderName> = connection_options(headers)
        .filter(|option| !is_removed_anyway(option))
        .filter_map(|option| HeaderName::from_bytes(option.as_bytes()).ok())
        .filter(|name| *name != header::HOST)
        .collect();
    let upgrade_to = upgrade
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    for name in listed {
        headers.remove(name);
    }
    for (index, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << index) != 0 {
            headers.remove(name);
        }
    }
    if let Some(protocol) = upgrade_to {
        headers.insert(header::UPGRADE, protocol);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// `name`'s place in [`HOP_BY_HOP`]: a `match` on the (lowercase) name, which compiles to a
/// switch on its length and one comparison, where comparing it with each of the seven names
/// in turn was most of the cost of a response's headers.
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    match name.as_str() {
        "connection" => Some(0),
        "keep-alive" => Some(1),
        "proxy-connection" => Some(2),
        "proxy-authorization" => Some(3),
        "te" => Some(4),
        "transfer-encoding" => Some(5),
        "upgrade" => Some(6),
        _ => None,
    }
}

/// Whether a `Connection` option needs no removal of its own: `close` names no field, and
/// the others are [`HOP_BY_HOP`] names.
fn is_removed_anyway(option: &str) -> bool {
    option.eq_ignore_ascii_case("close")
        || HOP_BY_HOP
            .iter()
            .any(|name| option.eq_ignore_ascii_case(name.as_str()))
}

/// Sets `X-Forwarded-For`, `-Proto` and `-Host`. A client's own values are replaced, unless
/// `[proxy] trust_forwarded_headers` says a trusted proxy stands in front of baton; then
/// baton appends to `X-Forwarded-For` and keeps the others. `X-Forwarded-Host` comes from
/// `Host` only. `X-Forwarded-Proto` is `https` when baton terminated TLS itself.
fn forwarded_headers(headers: &mut HeaderMap, downstream: Downstream, trusted: bool) {
    // A chain may be split over several header lines (RFC 9110 §5.3): keep every hop.
    let chain = trusted
        .then(|| {
            let lines: Vec<&str> = headers
                .get_all(X_FORWARDED_FOR)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .collect();
            (!lines.is_empty()).then(|| lines.join(", "))
        })
        .flatten();
    let forwarded_for = match chain {
        None => Ok(downstream.client_ip),
        Some(chain) => {
            // The client IP is ASCII: it was written from an address.
            let client_ip = downstream.client_ip.to_str().unwrap_or_default();
            HeaderValue::try_from(format!("{chain}, {client_ip}"))
        }
    };
    match forwarded_for {
        Ok(value) => {
            headers.insert(X_FORWARDED_FOR, value);
        }
        Err(_) => {
            headers.remove(X_FORWARDED_FOR);
        }
    }
    if !(trusted && headers.contains_key(X_FORWARDED_PROTO)) {
        headers.insert(
            X_FORWARDED_PROTO,
            HeaderValue::from_static(downstream.scheme.as_str()),
        );
    }
    if !(trusted && headers.contains_key(X_FORWARDED_HOST)) {
        match headers.get(header::HOST).cloned() {
            Some(host) => {
                headers.insert(X_FORWARDED_HOST, host);
            }
            None => {
                headers.remove(X_FORWARDED_HOST);
            }
        }
    }
}

// === impl OpenTunnel ===

impl Drop for OpenTunnel {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_of_each_hop_by_hop_name_is_its_place_in_the_list() {
        for (index, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(index), "{name}");
        }
        for name in [header::HOST, header::AUTHORIZATION, header::CONTENT_LENGTH] {
            assert_eq!(hop_by_hop_index(&name), None, "{name}");
        }
        let spelled = HeaderName::from_bytes(b"Transfer-Encoding").unwrap();
        assert_eq!(hop_by_hop_index(&spelled), Some(5));
    }

    fn headers(fields: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    fn names(headers: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn every_hop_by_hop_field_and_every_listed_one_goes() {
        let mut fields = headers(&[
            ("connection", "keep-alive, X-Listed"),
            ("connection", "Close, x-other"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic Zm9v"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-listed", "1"),
            ("x-other", "2"),
            ("host", "app.example"),
            ("x-kept", "3"),
        ]);
        remove_hop_by_hop(&mut fields, false);
        assert_eq!(names(&fields), ["host", "x-kept"]);
    }

    #[test]
    fn connection_never_removes_host() {
        let mut fields = headers(&[("connection", "host"), ("host", "app.example")]);
        remove_hop_by_hop(&mut fields, false);
        assert_eq!(names(&fields), ["host"]);
    }

    #[test]
    fn a_message_without_hop_by_hop_fields_is_left_alone() {
        let mut fields = headers(&[("x-listed", "1"), ("content-length", "2")]);
        remove_hop_by_hop(&mut fields, false);
        assert_eq!(names(&fields), ["content-length", "x-listed"]);
    }

    #[test]
    fn an_upgrade_keeps_its_protocol() {
        let mut fields = headers(&[
            ("connection", "Upgrade, x-listed"),
            ("upgrade", "websocket"),
            ("x-listed", "1"),
        ]);
        remove_hop_by_hop(&mut fields, true);
        assert_eq!(names(&fields), ["connection", "upgrade"]);
        assert_eq!(fields["upgrade"], "websocket");
        assert_eq!(fields["connection"], "upgrade");
    }
}
