package lbs

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/miekg/dns"

	"github.com/longlink/longlink/lbs/internal/model"
	"github.com/longlink/longlink/lbs/internal/state"
	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/pkg/config"
)

// unstarted builds a member with the test policy applied straight to its
// state machine, for handler-level tests and fuzzing without sockets.
func unstarted(t testing.TB) *LBS {
	t.Helper()
	dir := t.TempDir()
	cfg := testConfig(t, "fuzz", dir, filepath.Join(dir, "ca"))
	l, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	var doc model.Document
	if err := config.Decode("policy.yaml", mustRead(t, "testdata/policy.yaml"), &doc); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(state.Command{Op: state.OpApplyDoc, Who: "test", At: time.Now(), Doc: &doc})
	if r := l.fsm.Apply(&raft.Log{Index: 1, Data: b}).(state.Result); r.Err != "" {
		t.Fatal(r.Err)
	}
	close(l.caughtUp) // its state is the test's, current by construction
	return l
}

func FuzzDNSQuery(f *testing.F) {
	l := unstarted(f)
	s := &dnsServer{l: l, zone: "lbs.test."}
	for _, q := range []struct {
		name string
		t    uint16
		ecs  bool
	}{{"link.demo.lbs.test.", dns.TypeA, true}, {"_link._tcp.demo.lbs.test.", dns.TypeSRV, false},
		{"edge-sg.ep.lbs.test.", dns.TypeAAAA, false}, {"lbs.test.", dns.TypeSOA, false}, {"x.y.z.lbs.test.", dns.TypeTXT, true}} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.t)
		if q.ecs {
			m.SetEdns0(1232, false)
			m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: []byte{9, 9, 9, 0}})
		}
		b, _ := m.Pack()
		f.Add(b)
	}
	f.Add([]byte{0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff})
	f.Add([]byte{})
	client := netip.MustParseAddr("127.0.0.1")
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, udp := range []bool{true, false} {
			resp := s.handle(b, client, udp)
			if resp == nil {
				continue
			}
			out, err := resp.Pack()
			if err != nil {
				t.Fatalf("unpackable response: %v", err)
			}
			if udp && len(out) > 4096 {
				t.Fatalf("udp response of %d bytes", len(out))
			}
		}
	})
}

func FuzzHTTPQuery(f *testing.F) {
	l := unstarted(f)
	h := l.clientHandler()
	for _, s := range []string{"appkey=demo", "appkey=demo&env=beta&sdk=5.2.1&platform=ios", "appkey=signed&ts=1&sig=00",
		"appkey=%ff", "sdk=>=1", "appkey=demo&appkey=demo"} {
		f.Add(s, "9.9.9.9, 1.1.1.1")
	}
	f.Fuzz(func(t *testing.T, rawQuery, xff string) {
		req := httptest.NewRequest("GET", "/v1/lbs", nil)
		req.URL.RawQuery = rawQuery
		req.RemoteAddr = "127.0.0.1:5000"
		req.Header.Set("X-Forwarded-For", xff)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusNotFound, http.StatusUnauthorized:
		default:
			t.Fatalf("status %d for %q", w.Code, rawQuery)
		}
	})
}

func FuzzResolve(f *testing.F) {
	l := unstarted(f)
	h := l.clientHandler()
	f.Add("link.demo.lbs.test", "A", "9.9.9.0/24")
	f.Add("_link._tcp.demo.lbs.test.", "33", "")
	f.Add("..", "TXT", "::1")
	f.Fuzz(func(t *testing.T, name, typ, ecs string) {
		q := url.Values{"name": {name}, "type": {typ}, "edns_client_subnet": {ecs}}
		req := httptest.NewRequest("GET", "/resolve?"+q.Encode(), nil)
		req.RemoteAddr = "127.0.0.1:5000"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 && w.Code != 400 {
			t.Fatalf("status %d", w.Code)
		}
	})
}

func FuzzPolicyDocument(f *testing.F) {
	f.Add(mustRead(f, "testdata/policy.yaml"))
	f.Add(mustRead(f, "../deployments/lbs/policy.example.yaml"))
	f.Add([]byte("apps: [{appkey: a, pools: [p]}]\npools: [{name: p, entry_points: [e]}]\nentry_points: [{id: e, site: s, link: '1.2.3.4:1'}]\nrules: [{name: r, match: {sdk: '>=1 <2'}, pools: [p]}]"))
	l := unstarted(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var d model.Document
		if err := config.Decode("policy", b, &d); err != nil {
			return
		}
		// a document that validates must compile and answer
		cmd, _ := json.Marshal(state.Command{Op: state.OpApplyDoc, Doc: &d})
		l.fsm.Apply(&raft.Log{Index: 2, Data: cmd})
		for _, a := range d.Apps {
			req := httptest.NewRequest("GET", "/v1/lbs?appkey="+url.QueryEscape(a.AppKey), nil)
			w := httptest.NewRecorder()
			l.clientHandler().ServeHTTP(w, req)
			if w.Code != 200 && w.Code != 401 {
				t.Fatalf("app %s: %d %s", a.AppKey, w.Code, w.Body)
			}
		}
	})
}

// FuzzParseQuery checks the fast query decoder against miekg/dns: whatever
// parseQuery accepts, dns.Msg.Unpack decodes to the same query.
func FuzzParseQuery(f *testing.F) {
	for _, q := range []struct {
		name   string
		t      uint16
		ecs    *dns.EDNS0_SUBNET
		cookie bool
	}{
		{"link.demo.lbs.test.", dns.TypeA, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: []byte{9, 9, 9, 0}}, false},
		{"Link.DEMO.lbs.test.", dns.TypeAAAA, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 2, SourceNetmask: 56, Address: net.ParseIP("2001:db8:1:200::")}, true},
		{"_link._tcp.demo.lbs.test.", dns.TypeSRV, nil, true},
		{"lbs.test.", dns.TypeSOA, nil, false},
	} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.t)
		b, _ := m.Pack()
		f.Add(b)
		m.SetEdns0(1232, false)
		if q.ecs != nil {
			m.IsEdns0().Option = append(m.IsEdns0().Option, q.ecs)
		}
		if q.cookie {
			m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
		}
		b, _ = m.Pack()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast dnsRequest
		if !parseQuery(b, &fast) {
			return
		}
		req := new(dns.Msg)
		if err := req.Unpack(b); err != nil {
			t.Fatalf("parseQuery accepted what dns.Msg.Unpack refuses (%v): %x", err, b)
		}
		if slow := queryOf(req); fast != slow {
			t.Fatalf("parseQuery %+v, dns.Msg.Unpack %+v for %x", fast, slow, b)
		}
	})
}

// FuzzAdminRequests sends arbitrary bodies to the admin API's routes that
// read one (policy validate/diff/apply, tokens, TURN secrets, restore,
// drains) as an operator, and to the node reports (heartbeat, drain) as a
// node, on a running member: each is answered with a status below 500, or
// 503 when a write could not be committed, and what says it is JSON is. Membership
// changes (join, remove) are left out: they would take the member's quorum.
func FuzzAdminRequests(f *testing.F) {
	l := startSingle(f)
	h := l.adminHandler()
	routes := []struct{ method, path, token string }{
		{"POST", "/v1/policy/validate", testAdminToken},
		{"POST", "/v1/policy/diff", testAdminToken},
		{"POST", "/v1/policy/apply", testAdminToken},
		{"POST", "/v1/tokens", testAdminToken},
		{"POST", "/v1/turn-secrets", testAdminToken},
		{"POST", "/v1/raft/restore", testAdminToken},
		{"POST", "/v1/nodes/edge-sg/drain", testAdminToken},
		{"POST", lbsapi.PathHeartbeat, testNodeToken},
		{"POST", lbsapi.PathNodeDrain, testNodeToken},
	}
	policy := mustRead(f, "testdata/policy.yaml")
	for i := range routes {
		f.Add(uint8(i), []byte(`{"node":"edge-sg","connections":3,"cpu":0.5,"capacity":10}`))
		f.Add(uint8(i), policy)
		f.Add(uint8(i), []byte(`{"kind":"node","node":"edge-sg","id":"t1"}`))
		f.Add(uint8(i), []byte(`{"id":"s2","secret":"0123456789abcdef0123"}`))
		f.Add(uint8(i), []byte(`{"node":"nope","connections":-1}`))
	}
	f.Fuzz(func(t *testing.T, pick uint8, body []byte) {
		rt := routes[int(pick)%len(routes)]
		req := httptest.NewRequest(rt.method, rt.path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+rt.token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 && w.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %s %q: %d %s", rt.method, rt.path, body, w.Code, w.Body)
		}
		if w.Header().Get("Content-Type") == "application/json" && !json.Valid(w.Body.Bytes()) {
			t.Fatalf("%s %s %q: %d, body not JSON: %q", rt.method, rt.path, body, w.Code, w.Body)
		}
	})
}
