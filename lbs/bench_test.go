package lbs

import (
	"fmt"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/longlink/longlink/lbs/internal/engine"
)

// BenchmarkSelection is one SDK query's selection as the front ends run it:
// geo lookup (from the prefix cache after the first query) plus the policy
// chain. It prints p50/p99 as RESULT lines for tools/bench.
func BenchmarkSelection(b *testing.B) {
	l := unstarted(b)
	ips := []netip.Addr{netip.MustParseAddr("9.9.9.9"), netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("101.0.3.4"),
		netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("110.1.2.3")}
	reqs := []engine.Request{{AppKey: "demo"}, {AppKey: "demo", Env: "beta", SDK: "5.2.1"}, {AppKey: "acme", SDK: "5.0.0", Platform: "ios"}}
	for _, ip := range ips { // warm the geo cache
		l.geo.Lookup(ip)
	}
	lat := make([]time.Duration, 0, 1<<20)
	i := 0
	for b.Loop() {
		req := reqs[i%len(reqs)]
		req.Client = ips[i%len(ips)]
		i++
		t0 := time.Now()
		if _, _, err := l.query(&req); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	if len(lat) >= 10000 {
		slices.Sort(lat)
		us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
		p99 := lat[len(lat)*99/100]
		b.ReportMetric(us(p99), "p99-µs")
		fmt.Printf("RESULT lbs_selection_p50 %.2f us\nRESULT lbs_selection_p90 %.2f us\nRESULT lbs_selection_p99 %.2f us\n", us(lat[len(lat)/2]), us(lat[len(lat)*9/10]), us(p99))
	}
}

func BenchmarkDNSHandle(b *testing.B) {
	l := unstarted(b)
	s := &dnsServer{l: l, zone: "lbs.test."}
	m := new(dns.Msg)
	m.SetQuestion("link.demo.lbs.test.", dns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: []byte{9, 9, 9, 0}})
	q, _ := m.Pack()
	client := netip.MustParseAddr("127.0.0.1")
	out := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		r := s.handle(q, client, true)
		r.PackBuffer(out)
	}
}

func BenchmarkHTTPQuery(b *testing.B) {
	l := unstarted(b)
	h := l.clientHandler()
	req := httptest.NewRequest("GET", "/v1/lbs?appkey=demo&sdk=5.1.0", nil)
	req.RemoteAddr = "127.0.0.1:5000"
	req.Header.Set("X-Forwarded-For", "9.9.9.9")
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
	}
}
