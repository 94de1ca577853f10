//! The SSRF filter: addresses a webhook must never reach unless its host
//! is listed in `WEBHOOK_ALLOWED_HOSTS`. One function, used at the door
//! (address literals, and what a name resolves to) and at delivery (by the
//! resolver the consumer connects through).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is refused: loopback, private, link-local (which holds the
/// cloud metadata service 169.254.169.254), shared (CGNAT, where some
/// clouds put theirs), unspecified, broadcast, multicast, documentation and
/// reserved ranges, their IPv6 counterparts (unique local fc00::/7 holds
/// AWS's fd00:ec2::254), and every IPv6 range that carries an IPv4 address
/// to a gateway or the host itself: IPv4-mapped (judged by the IPv4 inside),
/// and, whatever they embed, IPv4-compatible (::/96), NAT64 (64:ff9b::/32
/// prefix), 6to4 (2002::/16, and its relay anycast 192.88.99.0/24) and
/// Teredo (2001:0::/32). Refusing the last ones whole is simpler and safer
/// than decoding them: a kernel or relay may deliver them to the IPv4
/// inside (`[::127.0.0.1]` reaches loopback on some systems).
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            forbidden_v6(v6)
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || s[..6] == [0; 6] // IPv4-compatible ::/96 (deprecated)
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || s[0] == 0x2001 && s[1] == 0x0db8 // documentation
        || s[0] == 0x2001 && s[1] == 0x0000 // Teredo (embeds IPv4)
        || s[0] == 0x2002 // 6to4 (embeds IPv4)
        || s[0] == 0x0064 && s[1] == 0xff9b // NAT64 (embeds IPv4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> bool {
        is_forbidden(text.parse().unwrap())
    }

    #[test]
    fn ipv4_compatible_ipv6_is_refused_whatever_it_embeds() {
        assert!(refused("::127.0.0.1"));
        assert!(refused("::8.8.8.8"));
        assert!(
            refused("::ffff:1"),
            "::/96 holds ::ffff:1, not a mapped address"
        );
    }

    #[test]
    fn six_to_four_is_refused_whatever_it_embeds() {
        assert!(refused("2002:7f00:1::"));
        assert!(refused("2002:808:808::1"));
        assert!(refused("2002:ffff:ffff:ffff::"));
        assert!(!refused("2003::1"));
    }

    #[test]
    fn teredo_is_refused_and_the_rest_of_2001_is_not() {
        assert!(refused("2001:0:4136:e378:8000:63bf:3fff:fdd2"));
        assert!(refused("2001::1"));
        assert!(!refused("2001:1::1"));
        assert!(!refused("2001:4860:4860::8888"));
        assert!(!refused("2001:db9::1"));
        assert!(refused("2001:db8::1"), "documentation");
    }

    #[test]
    fn the_6to4_relay_anycast_is_refused_and_only_it() {
        assert!(refused("192.88.99.1"));
        assert!(refused("192.88.99.255"));
        assert!(refused("::ffff:192.88.99.1"));
        assert!(!refused("192.88.98.1"));
        assert!(!refused("192.88.100.1"));
    }

    #[test]
    fn nat64_and_mapped_addresses_are_judged() {
        assert!(refused("64:ff9b::7f00:1"));
        assert!(refused("64:ff9b:1::1"));
        assert!(refused("::ffff:127.0.0.1"));
        assert!(!refused("::ffff:8.8.8.8"));
    }

    #[test]
    fn public_addresses_stay_reachable() {
        for public in ["8.8.8.8", "93.184.215.14", "2606:4700:4700::1111"] {
            assert!(!refused(public), "{public}");
        }
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "169.254.169.254",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
        ] {
            assert!(refused(private), "{private}");
        }
    }
}
