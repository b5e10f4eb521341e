package turn

import (
	"net"
	"net/netip"
)

// deniedByDefault are the peer ranges a relay must not reach unless the
// operator opens them: they lead into the server's own networks rather than
// to another user on the Internet.
var deniedByDefault = mustPrefixes(
	"0.0.0.0/8",       // "this network"
	"10.0.0.0/8",      // private
	"100.64.0.0/10",   // carrier-grade NAT (and Alibaba's 100.100.100.200 metadata)
	"127.0.0.0/8",     // loopback
	"169.254.0.0/16",  // link-local (and the metadata service)
	"172.16.0.0/12",   // private
	"192.0.0.0/24",    // IETF protocol assignments (Oracle's 192.0.0.192 metadata)
	"192.0.2.0/24",    // documentation
	"192.168.0.0/16",  // private
	"198.18.0.0/15",   // benchmarking
	"198.51.100.0/24", // documentation
	"203.0.113.0/24",  // documentation
	"224.0.0.0/4",     // multicast
	"240.0.0.0/4",     // reserved, and broadcast
	"::/128",          // unspecified
	"::1/128",         // loopback
	"64:ff9b:1::/48",  // local-use NAT64
	"100::/64",        // discard
	"2001:db8::/32",   // documentation
	"fc00::/7",        // unique local (and AWS fd00:ec2::254 metadata)
	"fe80::/10",       // link-local
	"fec0::/10",       // site-local (deprecated)
	"ff00::/8",        // multicast
)

// metadataAddrs are cloud instance metadata services. They are opened only
// by an allow entry naming exactly that address, never by a wider range.
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"), // AWS, GCP, Azure, OpenStack
	netip.MustParseAddr("169.254.170.2"),   // AWS ECS task metadata
	netip.MustParseAddr("169.254.169.123"), // AWS time sync
	netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
	netip.MustParseAddr("192.0.0.192"),     // Oracle Cloud
	netip.MustParseAddr("fd00:ec2::254"),   // AWS over IPv6
	netip.MustParseAddr("fd00:ec2::123"),   // AWS time sync over IPv6
}

// Prefixes that embed an IPv4 address: the embedded address is judged too,
// so that 64:ff9b::127.0.0.1 does not reach loopback through a NAT64.
var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")
)

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// peerPolicy decides whether a relay may talk to a peer address.
type peerPolicy struct {
	allow []netip.Prefix
	deny  []netip.Prefix
}

func newPeerPolicy(cfg PeerConfig) (*peerPolicy, error) {
	p := &peerPolicy{}
	for _, s := range cfg.Allow {
		pr, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		p.allow = append(p.allow, pr.Masked())
	}
	for _, s := range cfg.Deny {
		pr, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		p.deny = append(p.deny, pr.Masked())
	}
	return p, nil
}

// allowedIP is the net.IP form used by pion's permission handler.
func (p *peerPolicy) allowedIP(ip net.IP) bool {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	return p.allowed(a)
}

func (p *peerPolicy) allowed(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	if !p.allowedOne(a) {
		return false
	}
	// Judge an IPv4 address embedded in a translation prefix as well.
	if a.Is6() && (nat64Prefix.Contains(a) || sixToFour.Contains(a)) {
		b := a.As16()
		var v4 [4]byte
		if nat64Prefix.Contains(a) {
			copy(v4[:], b[12:16])
		} else {
			copy(v4[:], b[2:6])
		}
		return p.allowedOne(netip.AddrFrom4(v4))
	}
	return true
}

func (p *peerPolicy) allowedOne(a netip.Addr) bool {
	for _, d := range p.deny {
		if d.Contains(a) {
			return false
		}
	}
	for _, m := range metadataAddrs {
		if a == m {
			for _, al := range p.allow {
				if al.IsSingleIP() && al.Addr() == a {
					return true
				}
			}
			return false
		}
	}
	for _, al := range p.allow {
		if al.Contains(a) {
			return true
		}
	}
	for _, d := range deniedByDefault {
		if d.Contains(a) {
			return false
		}
	}
	return true
}
