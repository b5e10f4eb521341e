package turn

import (
	"net/netip"
	"testing"
)

func TestPeerPolicy(t *testing.T) {
	tests := []struct {
		name  string
		cfg   PeerConfig
		addr  string
		allow bool
	}{
		{name: "public v4", addr: "8.8.8.8", allow: true},
		{name: "public v6", addr: "2606:4700::1111", allow: true},
		{name: "loopback", addr: "127.0.0.1", allow: false},
		{name: "loopback other", addr: "127.3.2.1", allow: false},
		{name: "v4-mapped loopback", addr: "::ffff:127.0.0.1", allow: false},
		{name: "metadata", addr: "169.254.169.254", allow: false},
		{name: "link-local", addr: "169.254.1.1", allow: false},
		{name: "private 10", addr: "10.1.2.3", allow: false},
		{name: "private 172", addr: "172.20.0.1", allow: false},
		{name: "private 192", addr: "192.168.1.1", allow: false},
		{name: "cgnat", addr: "100.64.0.1", allow: false},
		{name: "alibaba metadata", addr: "100.100.100.200", allow: false},
		{name: "multicast", addr: "239.1.1.1", allow: false},
		{name: "broadcast", addr: "255.255.255.255", allow: false},
		{name: "unspecified", addr: "0.0.0.0", allow: false},
		{name: "v6 loopback", addr: "::1", allow: false},
		{name: "v6 ula", addr: "fd12::1", allow: false},
		{name: "aws v6 metadata", addr: "fd00:ec2::254", allow: false},
		{name: "v6 link-local", addr: "fe80::1", allow: false},
		{name: "v6 multicast", addr: "ff02::1", allow: false},
		{name: "nat64 to loopback", addr: "64:ff9b::7f00:1", allow: false},
		{name: "nat64 to public", addr: "64:ff9b::808:808", allow: true},
		{name: "6to4 to private", addr: "2002:0a00:0001::1", allow: false},
		{name: "allow opens loopback", cfg: PeerConfig{Allow: []string{"127.0.0.0/8"}}, addr: "127.0.0.1", allow: true},
		{name: "allow opens mapped loopback", cfg: PeerConfig{Allow: []string{"127.0.0.0/8"}}, addr: "::ffff:127.0.0.1", allow: true},
		{name: "wide allow keeps metadata closed", cfg: PeerConfig{Allow: []string{"169.254.0.0/16"}}, addr: "169.254.169.254", allow: false},
		{name: "wide allow opens link-local", cfg: PeerConfig{Allow: []string{"169.254.0.0/16"}}, addr: "169.254.1.1", allow: true},
		{name: "exact allow opens metadata", cfg: PeerConfig{Allow: []string{"169.254.169.254/32"}}, addr: "169.254.169.254", allow: true},
		{name: "deny wins", cfg: PeerConfig{Allow: []string{"10.0.0.0/8"}, Deny: []string{"10.1.0.0/16"}}, addr: "10.1.2.3", allow: false},
		{name: "deny public", cfg: PeerConfig{Deny: []string{"8.8.8.0/24"}}, addr: "8.8.8.8", allow: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := newPeerPolicy(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.allowed(netip.MustParseAddr(tt.addr)); got != tt.allow {
				t.Fatalf("allowed(%s) = %v, want %v", tt.addr, got, tt.allow)
			}
		})
	}
}
