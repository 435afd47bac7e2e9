//! Which URLs baton fetches an IdP's keys from: the JWKS URL, the discovery URL, the
//! discovery document's `jwks_uri`, and every redirect they lead to.
//!
//! A JWKS is a trust anchor: whoever can change it in transit can sign tokens baton accepts.
//! So keys come over `https`, except from a loopback address (`127.0.0.0/8`, `::1`,
//! `localhost`: a sidecar's neighbour in the same pod or host, never on the wire), unless the
//! IdP's config sets `allow_http = true`. Redirects are checked hop by hop with the same rule,
//! at most [`MAX_REDIRECTS`] of them, and never from `https` to `http`, even with
//! `allow_http`: a document asked for over TLS is never answered in the clear (the rule
//! browsers apply to mixed content, and the one Envoy's and Keycloak's users expect).
//!
//! The rules are pure functions of URLs so that they are unit-tested without a network; the
//! JWKS client ([`super::jwks`]) applies [`check_redirect`] in its redirect policy, and
//! config validation applies [`check_url`].

use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs as _, UdpSocket};

use url::{Host, Url};

/// The most redirects followed for one fetch (a 4th is refused).
pub const MAX_REDIRECTS: usize = 3;

/// Whether plain `http` is allowed beyond loopback.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum UrlPolicy {
    /// `https`, or `http` to a loopback address (the default).
    #[default]
    HttpsOrLoopback,
    /// `http` to any host as well (`allow_http = true`): a network attacker on the path can
    /// swap the keys. For a trusted network only.
    InsecureHttpAllowed,
}

/// Why a URL is not fetched.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlRefusal {
    /// A redirect from an `https` URL to an `http` one.
    #[error("a redirect from https to http is never followed")]
    Downgrade,
    /// Plain `http` to a host that is not a loopback address, without `allow_http`.
    #[error("must be https (or a loopback address) unless allow_http = true")]
    PlainHttp,
    /// More than [`MAX_REDIRECTS`] redirects.
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
    /// Neither `http` nor `https`.
    #[error("the scheme {0:?} is neither https nor http")]
    UnsupportedScheme(String),
}

/// A redirect the JWKS client refused to follow, and why (the error its redirect policy
/// returns; the fetch reports it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("redirect to {to} refused: {reason}")]
pub struct RedirectRefused {
    /// Where the redirect pointed.
    pub to: String,
    /// The rule it broke.
    pub reason: UrlRefusal,
}

/// Whether `url` may be fetched under `policy`.
pub fn check_url(url: &Url, policy: UrlPolicy) -> Result<(), UrlRefusal> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if policy == UrlPolicy::InsecureHttpAllowed || is_loopback(url) => Ok(()),
        "http" => Err(UrlRefusal::PlainHttp),
        other => Err(UrlRefusal::UnsupportedScheme(other.to_owned())),
    }
}

/// Whether a fetch that has requested `previous` (the first URL and each redirect so far, as
/// reqwest's `redirect::Attempt::previous` lists them) may follow a redirect to `next`.
pub fn check_redirect(previous: &[Url], next: &Url, policy: UrlPolicy) -> Result<(), UrlRefusal> {
    // `previous` holds the original URL too: the redirect about to be followed is number
    // `previous.len()`.
    if previous.len() > MAX_REDIRECTS {
        return Err(UrlRefusal::TooManyRedirects);
    }
    if next.scheme() == "http" && previous.iter().any(|url| url.scheme() == "https") {
        return Err(UrlRefusal::Downgrade);
    }
    check_url(next, policy)
}

/// Whether `url`'s host is a loopback address: `localhost`, `127.0.0.0/8`, `::1` (or
/// `::ffff:127.x.y.z`, which the kernel routes to the IPv4 loopback). Names other than
/// `localhost` are not resolved: what a name resolves to can change after the check.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => is_loopback_ipv6(ip),
        None => false,
    }
}

/// Whether `ip` is a loopback address of either family (IPv4-mapped IPv6 included).
pub fn is_loopback_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => is_loopback_ipv6(ip),
    }
}

/// The first of `listeners` (named, e.g. `("proxy", addr)`) that a fetch of `url` would
/// reach, if any: the URL's port (or its scheme's default) is the listener's, and its host is
/// the listener's address, or any address of this machine when the listener's is unspecified
/// (`0.0.0.0`, `::`). A host that is itself unspecified connects to this machine, so it
/// matches any listener on its port. Names are resolved (this blocks); one that does not
/// resolve reaches nothing.
pub fn own_listener<'a>(
    url: &Url,
    listeners: &'a [(&'static str, SocketAddr)],
) -> Option<&'a (&'static str, SocketAddr)> {
    let port = url.port_or_known_default()?;
    let targets: Vec<IpAddr> = match url.host()? {
        Host::Ipv4(ip) => vec![IpAddr::V4(ip)],
        Host::Ipv6(ip) => vec![IpAddr::V6(ip)],
        Host::Domain(name) => (name, port)
            .to_socket_addrs()
            .map(|addrs| addrs.map(|a| a.ip()).collect())
            .unwrap_or_default(),
    };
    listeners.iter().find(|(_, listener)| {
        targets.iter().any(|target| {
            reaches_listener(SocketAddr::new(*target, port), *listener, is_local_address)
        })
    })
}

/// Whether a connection to `target` reaches a socket listening on `listener`, where
/// `is_local` tells whether an address is one of this machine's.
pub fn reaches_listener(
    target: SocketAddr,
    listener: SocketAddr,
    is_local: impl Fn(IpAddr) -> bool,
) -> bool {
    if target.port() != listener.port() {
        return false;
    }
    // `::ffff:a.b.c.d` is a.b.c.d to a dual-stack socket.
    let (target_ip, listener_ip) = (target.ip().to_canonical(), listener.ip().to_canonical());
    if target_ip.is_unspecified() {
        // Connecting to 0.0.0.0 or :: connects to this machine.
        return true;
    }
    if listener_ip.is_unspecified() {
        // A wildcard listener takes connections to every local address; a `::` one takes
        // IPv4 as well (Linux's default `bindv6only = 0`), so either family counts.
        return is_loopback_ip(target_ip) || is_local(target_ip);
    }
    target_ip == listener_ip
}

/// Whether `ip` is an address of this machine: one a socket can be bound to.
fn is_local_address(ip: IpAddr) -> bool {
    UdpSocket::bind((ip, 0)).is_ok()
}

fn is_loopback_ipv6(ip: Ipv6Addr) -> bool {
    ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
}

#[cfg(test)]
mod tests;
