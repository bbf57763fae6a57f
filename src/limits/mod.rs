//! Limits on what one client may ask of herald: counts kept per key in fixed windows
//! ([`window_counts`]), the per-address rate limits on registration and search
//! ([`per_address`]), and which address a request is charged to ([`network_of`]).
//!
//! Every table here is bounded: a flood of new keys evicts old windows instead of growing
//! memory. The counts live in one process: with several instances behind a balancer each
//! keeps its own, so the effective limit is at most the instance count times the configured one.

pub mod per_address;
pub mod window_counts;

use std::net::{IpAddr, Ipv6Addr};

/// The address a limit applies to: IPv4 as is, IPv6 by its /64 (one subscriber's prefix: a
/// client holds a whole /64 and could otherwise change address at every attempt). An IPv4
/// address mapped into IPv6 counts as the IPv4 address it is.
pub fn network_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !u128::from(u64::MAX);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// A wait as `Retry-After` gives it: whole seconds, rounded up, at least one.
pub fn whole_seconds(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    #[test]
    fn ipv6_counts_by_its_prefix_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("v6");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("v6");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("v6");
        assert_eq!(super::network_of(a), super::network_of(b));
        assert_ne!(super::network_of(a), super::network_of(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("mapped");
        assert_eq!(
            super::network_of(mapped),
            "192.0.2.7".parse::<IpAddr>().expect("v4")
        );
    }

    #[test]
    fn waits_round_up_to_whole_seconds() {
        use std::time::Duration;
        assert_eq!(super::whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(super::whole_seconds(Duration::from_millis(2001)), 3);
        assert_eq!(super::whole_seconds(Duration::ZERO), 1);
    }
}
