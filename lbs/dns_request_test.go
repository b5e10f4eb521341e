package lbs

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

func packQuery(t *testing.T, name string, qtype uint16, opts ...dns.EDNS0) []byte {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if opts != nil {
		m.SetEdns0(1400, false)
		m.IsEdns0().Option = opts
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestParseQuery: the usual queries take the fast decoder and decode as
// miekg/dns decodes them; the others are left to miekg/dns and still get
// the same answers.
func TestParseQuery(t *testing.T) {
	ecs4 := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: []byte{9, 9, 9, 77}}
	ecs6 := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 2, SourceNetmask: 56, Address: netip.MustParseAddr("2001:db8:1:2ff::1").AsSlice()}
	cookie := &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}
	fast := []struct {
		name string
		b    []byte
		ecs  string
	}{
		{"no EDNS", packQuery(t, "link.demo.lbs.test.", dns.TypeA), ""},
		{"EDNS, no options", packQuery(t, "Link.Demo.lbs.test.", dns.TypeA, []dns.EDNS0{}...), ""},
		{"ECS v4, host bits masked", packQuery(t, "link.demo.lbs.test.", dns.TypeA, ecs4), "9.9.9.0/24"},
		{"ECS v6 and a cookie", packQuery(t, "_link._tcp.demo.lbs.test.", dns.TypeSRV, cookie, ecs6), "2001:db8:1:200::/56"},
	}
	for _, c := range fast {
		t.Run(c.name, func(t *testing.T) {
			var q dnsRequest
			if !parseQuery(c.b, &q) {
				t.Fatal("not taken by the fast decoder")
			}
			req := new(dns.Msg)
			if err := req.Unpack(c.b); err != nil {
				t.Fatal(err)
			}
			if slow := queryOf(req); q != slow {
				t.Fatalf("fast %+v, miekg/dns %+v", q, slow)
			}
			if got := q.ecs; (c.ecs == "" && got.IsValid()) || (c.ecs != "" && got.String() != c.ecs) {
				t.Fatalf("ecs %v, want %q", got, c.ecs)
			}
		})
	}
	// forms left to miekg/dns: the server answers them all the same
	nsid := &dns.EDNS0_NSID{Code: dns.EDNS0NSID}
	twoQuestions := new(dns.Msg)
	twoQuestions.SetQuestion("link.demo.lbs.test.", dns.TypeA)
	twoQuestions.Question = append(twoQuestions.Question, twoQuestions.Question[0])
	twoQ, _ := twoQuestions.Pack()
	slow := []struct {
		name  string
		b     []byte
		rcode int
	}{
		{"another option", packQuery(t, "link.demo.lbs.test.", dns.TypeA, nsid), dns.RcodeSuccess},
		{"escaped byte in the name", packQuery(t, `a\.b.demo.lbs.test.`, dns.TypeA), dns.RcodeNameError},
		{"trailing bytes", append(packQuery(t, "link.demo.lbs.test.", dns.TypeA), 0), dns.RcodeSuccess},
		{"two questions", twoQ, dns.RcodeFormatError},
	}
	s := &dnsServer{l: unstarted(t), zone: "lbs.test."}
	client := netip.MustParseAddr("127.0.0.1")
	for _, c := range slow {
		t.Run(c.name, func(t *testing.T) {
			var q dnsRequest
			if parseQuery(c.b, &q) {
				t.Fatal("taken by the fast decoder")
			}
			if resp := s.handle(c.b, client, true); resp == nil || resp.Rcode != c.rcode {
				t.Fatalf("answer %v, want rcode %d", resp, c.rcode)
			}
		})
	}
}

func TestParseQueryAllocs(t *testing.T) {
	b := packQuery(t, "link.demo.lbs.test.", dns.TypeA, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: []byte{9, 9, 9, 0}})
	var q dnsRequest
	// one: the name's string
	if n := testing.AllocsPerRun(100, func() { parseQuery(b, &q) }); n > 1 {
		t.Fatalf("%v allocations per query", n)
	}
}

// TestDNSAnswerAllocs bounds the allocations of the usual UDP query, decoded,
// answered (ECS, three A records) and packed: they are most of what the
// answer path costs besides the system calls.
func TestDNSAnswerAllocs(t *testing.T) {
	s := &dnsServer{l: unstarted(t), zone: "lbs.test."}
	b := packQuery(t, "link.demo.lbs.test.", dns.TypeA, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: []byte{9, 9, 9, 0}})
	client := netip.MustParseAddr("127.0.0.1")
	out := make([]byte, 0, 4096)
	if resp := s.handle(b, client, true); resp == nil || len(resp.Answer) != 3 {
		t.Fatalf("answer %v", resp)
	}
	n := testing.AllocsPerRun(200, func() {
		if _, err := s.handle(b, client, true).PackBuffer(out); err != nil {
			t.Fatal(err)
		}
	})
	if n > 14 {
		t.Fatalf("%v allocations per answer, want at most 14", n)
	}
}
