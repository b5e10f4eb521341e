package main

import (
	"net"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/miekg/dns"

	"github.com/longlink/longlink/geo/mmdbbuild"
)

// A patched template is the query miekg/dns would pack for that ID and
// subnet: same question, an ECS option for exactly that /24.
func TestQueryTemplateFill(t *testing.T) {
	tpl, err := newQueryTemplate("_link._tcp.demo.lbs.test", dns.TypeSRV)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	for _, c := range []struct {
		id     uint16
		subnet string
	}{{0, "20.0.0.0"}, {0xbeef, "35.255.254.0"}, {65535, "1.2.3.0"}} {
		s := netip.MustParseAddr(c.subnet).As4()
		q := tpl.fill(buf, c.id, uint32(s[0])<<24|uint32(s[1])<<16|uint32(s[2])<<8)
		m := new(dns.Msg)
		if err := m.Unpack(q); err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		if m.Id != c.id || len(m.Question) != 1 || m.Question[0].Name != "_link._tcp.demo.lbs.test." || m.Question[0].Qtype != dns.TypeSRV {
			t.Fatalf("%v: unpacked %v", c, m)
		}
		opt := m.IsEdns0()
		if opt == nil || len(opt.Option) != 1 {
			t.Fatalf("%v: no single EDNS option: %v", c, m)
		}
		e, ok := opt.Option[0].(*dns.EDNS0_SUBNET)
		if !ok || e.Family != 1 || e.SourceNetmask != 24 || !e.Address.Equal(net.ParseIP(c.subnet)) {
			t.Fatalf("%v: ECS %v", c, opt.Option[0])
		}
	}
}

func TestParseReply(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("link.demo.lbs.test.", dns.TypeA)
	q.Id = 4242
	qw, _ := q.Pack()
	if _, isResp, _ := parseReply(qw); isResp {
		t.Fatal("a query taken for a response")
	}
	r := new(dns.Msg)
	r.SetReply(q)
	empty, _ := r.Pack()
	if id, isResp, answered := parseReply(empty); id != 4242 || !isResp || answered {
		t.Fatalf("empty NOERROR: %d %v %v", id, isResp, answered)
	}
	r.Answer = append(r.Answer, &dns.A{Hdr: dns.RR_Header{Name: "link.demo.lbs.test.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 20}, A: net.IPv4(192, 0, 2, 11)})
	full, _ := r.Pack()
	if id, isResp, answered := parseReply(full); id != 4242 || !isResp || !answered {
		t.Fatalf("answer: %d %v %v", id, isResp, answered)
	}
	r.Rcode = dns.RcodeNameError
	nx, _ := r.Pack()
	if _, isResp, answered := parseReply(nx); !isResp || answered {
		t.Fatal("NXDOMAIN with a record counted as answered")
	}
	if _, isResp, _ := parseReply(full[:11]); isResp {
		t.Fatal("a runt taken for a response")
	}
}

// The synthetic world builds into a database, and every subnet drawn from
// it is distinct and inside one of its networks.
func TestSyntheticWorldSubnets(t *testing.T) {
	recs := syntheticWorld(64, 1)
	dir := t.TempDir()
	csv := filepath.Join(dir, "world.csv")
	if err := writeWorldCSV(csv, recs); err != nil {
		t.Fatal(err)
	}
	if err := mmdbbuild.BuildFile(csv, filepath.Join(dir, "city.mmdb"), filepath.Join(dir, "asn.mmdb")); err != nil {
		t.Fatal(err)
	}
	subs, err := drawSubnets(recs, 64*64, 3)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint32]bool{}
	for _, s := range subs {
		if seen[s] || s&0xff != 0 {
			t.Fatalf("subnet %#x repeated or not a /24", s)
		}
		seen[s] = true
		a := netip.AddrFrom4([4]byte{byte(s >> 24), byte(s >> 16), byte(s >> 8), 0})
		in := false
		for _, r := range recs {
			in = in || netip.MustParsePrefix(r.Network).Contains(a)
		}
		if !in {
			t.Fatalf("subnet %v outside the world", a)
		}
	}
	if _, err := drawSubnets(recs, 64*64+1, 3); err == nil {
		t.Fatal("more subnets than the world holds: no error")
	}
}
