//! Which address a request comes from. The TCP peer, always, unless the peer is one of
//! `http.trusted_proxies`: then the nearest address in `X-Forwarded-For` that is not itself a
//! trusted proxy (read from the right, since a client can write anything at the left). Only a
//! value that parses as an IP address is believed, so what reaches the log or a limit's table is
//! an address, never text a client chose.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::dev::ServiceRequest;
use actix_web::HttpRequest;

const FORWARDED_FOR: &str = "x-forwarded-for";

/// An address block: an address and how many of its leading bits must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Block {
    base: u128,
    bits: u32,
    v4: bool,
}

impl Block {
    fn parse(text: &str) -> Option<Block> {
        let (address, bits) = match text.split_once('/') {
            Some((address, bits)) => (address, Some(bits.parse::<u32>().ok()?)),
            None => (text, None),
        };
        let (base, width, v4) = match address.trim().parse::<IpAddr>().ok()? {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32, true),
            IpAddr::V6(v6) => (u128::from(v6), 128, false),
        };
        let bits = bits.unwrap_or(width);
        if bits > width {
            return None;
        }
        Some(Block {
            base: base & mask(bits, width),
            bits,
            v4,
        })
    }

    fn contains(&self, address: IpAddr) -> bool {
        let (value, width, v4) = match canonical(address) {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32, true),
            IpAddr::V6(v6) => (u128::from(v6), 128, false),
        };
        v4 == self.v4 && value & mask(self.bits, width) == self.base
    }
}

/// The top `bits` of a `width`-bit address (`bits <= width <= 128`).
fn mask(bits: u32, width: u32) -> u128 {
    let all = if width == 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    };
    if bits == 0 {
        0
    } else {
        all & !((1u128 << (width - bits)) - 1)
    }
}

/// IPv4 addresses mapped into IPv6 (a dual-stack listener's peers) as the IPv4 they are.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

/// `http.trusted_proxies`, parsed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Arc<Vec<Block>>);

impl TrustedProxies {
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let blocks = entries
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
            .map(|entry| {
                Block::parse(entry).ok_or_else(|| {
                    format!(
                        "http.trusted_proxies: {entry:?} is not an IP address or a CIDR block \
                         such as 10.0.0.0/8"
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies(Arc::new(blocks)))
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|block| block.contains(address))
    }

    /// The client behind `peer`, given the request's `X-Forwarded-For` values: the peer itself
    /// unless it is trusted; else the nearest untrusted forwarded address. An entry that is not
    /// an address ends the walk at the last hop that was believed.
    pub fn client(&self, peer: IpAddr, forwarded: &[&str]) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let hops = forwarded.iter().rev().flat_map(|value| value.rsplit(','));
        let mut client = peer;
        for hop in hops {
            let Some(address) = parse_hop(hop) else {
                break;
            };
            client = canonical(address);
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`192.0.2.1:4711`,
/// `[2001:db8::1]:4711`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
}

/// Where a request comes from: its TCP peer, and the client it is charged to (the same, unless
/// a trusted proxy forwarded it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddress {
    pub peer: IpAddr,
    pub client: IpAddr,
}

impl ClientAddress {
    fn of(
        peer: Option<IpAddr>,
        headers: &actix_web::http::header::HeaderMap,
        trusted: &TrustedProxies,
    ) -> Option<Self> {
        let peer = peer?;
        let forwarded: Vec<&str> = headers
            .get_all(FORWARDED_FOR)
            .filter_map(|v| v.to_str().ok())
            .collect();
        Some(ClientAddress {
            peer: canonical(peer),
            client: trusted.client(peer, &forwarded),
        })
    }

    /// The address a request is charged to, as `trusted` says.
    pub fn of_request(req: &HttpRequest, trusted: &TrustedProxies) -> Option<Self> {
        Self::of(req.peer_addr().map(|a| a.ip()), req.headers(), trusted)
    }

    /// The access log's client field: the peer, and the client it forwarded for when that
    /// differs (`10.0.0.2 for 203.0.113.9`). Both are parsed addresses.
    pub fn log_field(req: &ServiceRequest, trusted: &TrustedProxies) -> String {
        match Self::of(req.peer_addr().map(|a| a.ip()), req.headers(), trusted) {
            None => "-".to_owned(),
            Some(a) if a.client == a.peer => a.peer.to_string(),
            Some(a) => format!("{} for {}", a.peer, a.client),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::TrustedProxies;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    fn proxies(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>())
            .expect("valid")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let none = proxies(&[]);
        assert_eq!(
            none.client(ip("192.0.2.1"), &["203.0.113.9"]),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn a_trusted_proxy_is_believed_from_the_right() {
        let trusted = proxies(&["10.0.0.0/8", "2001:db8::/32"]);
        // The client wrote a forged entry at the left; the proxy appended the real one.
        assert_eq!(
            trusted.client(ip("10.1.2.3"), &["6.6.6.6, 203.0.113.9"]),
            ip("203.0.113.9")
        );
        // Two proxies in a row.
        assert_eq!(
            trusted.client(ip("10.1.2.3"), &["203.0.113.9, 10.9.9.9"]),
            ip("203.0.113.9")
        );
        // Several header lines read as one list, in order.
        assert_eq!(
            trusted.client(ip("2001:db8::1"), &["198.51.100.1", "10.0.0.7"]),
            ip("198.51.100.1")
        );
        // Garbage is not believed: the walk stops at the last believed hop.
        assert_eq!(
            trusted.client(ip("10.1.2.3"), &["\"evil\" 1.2.3.4"]),
            ip("10.1.2.3")
        );
        assert_eq!(trusted.client(ip("10.1.2.3"), &[]), ip("10.1.2.3"));
        assert_eq!(
            trusted.client(ip("10.1.2.3"), &["[2001:db9::5]:4711"]),
            ip("2001:db9::5")
        );
    }

    #[test]
    fn mapped_ipv4_peers_match_ipv4_blocks() {
        let trusted = proxies(&["127.0.0.1"]);
        assert_eq!(
            trusted.client(ip("::ffff:127.0.0.1"), &["192.0.2.8"]),
            ip("192.0.2.8")
        );
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in ["10.0.0.0/33", "proxy.example.com", "::/129", "1.2.3.4/x"] {
            assert!(TrustedProxies::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
        assert!(TrustedProxies::parse(&["0.0.0.0/0".into(), "::/0".into()]).is_ok());
    }
}
