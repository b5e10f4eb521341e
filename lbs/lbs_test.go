package lbs

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/longlink/longlink/lbs/lbsapi"
)

func query(t *testing.T, l *LBS, params string, xff string) (int, lbsapi.Answer) {
	t.Helper()
	hdr := map[string]string{}
	if xff != "" {
		hdr["X-Forwarded-For"] = xff
	}
	code, b := httpGet(t, "http://"+l.ClientAddr().String()+lbsapi.PathQuery+"?"+params, hdr)
	var a lbsapi.Answer
	if code == 200 {
		if err := json.Unmarshal(b, &a); err != nil {
			t.Fatal(err)
		}
	}
	return code, a
}

func linkIDs(a lbsapi.Answer) []string {
	var out []string
	for _, e := range a.Link {
		out = append(out, e.ID)
	}
	return out
}

func TestHTTPQuery(t *testing.T) {
	l := startSingle(t)
	cases := []struct {
		name, params, xff string
		code              int
		first             string
		contains, absent  []string
	}{
		{"sg client", "appkey=demo", "101.0.0.7", 200, "edge-sg", []string{"core-gw"}, []string{"canary-sg"}},
		{"german client", "appkey=demo", "9.9.9.9", 200, "edge-fra", nil, nil},
		{"us client", "appkey=demo", "8.8.8.8", 200, "edge-usw", nil, nil},
		{"xff chain: rightmost untrusted wins", "appkey=demo", "1.1.1.1, 9.9.9.9", 200, "edge-fra", nil, nil},
		{"canary in range", "appkey=demo&env=beta&sdk=5.2.3", "101.0.0.7", 200, "canary-sg", nil, []string{"edge-sg"}},
		{"canary out of range", "appkey=demo&env=beta&sdk=5.3.0", "101.0.0.7", 200, "edge-sg", nil, []string{"canary-sg"}},
		{"unknown app", "appkey=nope", "", 404, "", nil, nil},
		{"missing appkey", "env=x", "", 400, "", nil, nil},
		{"repeated parameter", "appkey=demo&appkey=acme", "", 400, "", nil, nil},
		{"unsigned query for a signing app", "appkey=signed", "", 401, "", nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, a := query(t, l, c.params, c.xff)
			if code != c.code {
				t.Fatalf("code %d, want %d", code, c.code)
			}
			if code != 200 {
				return
			}
			ids := linkIDs(a)
			if ids[0] != c.first {
				t.Fatalf("first %s, want %s (%v)", ids[0], c.first, ids)
			}
			for _, x := range c.contains {
				if !slices.Contains(ids, x) {
					t.Errorf("%s missing from %v", x, ids)
				}
			}
			for _, x := range c.absent {
				if slices.Contains(ids, x) {
					t.Errorf("%s in %v", x, ids)
				}
			}
			if a.PolicyVersion != 1 || a.RaftIndex == 0 || a.TTL != 20 || a.StalenessMs != 0 {
				t.Errorf("meta: %+v", a)
			}
		})
	}
	// the fallback is last and marked; key ids and weblink URLs are carried
	_, a := query(t, l, "appkey=demo", "101.0.0.7")
	last := a.Link[len(a.Link)-1]
	if last.ID != "core-gw" || !last.Fallback || !slices.Equal(last.KeyIDs, []string{"k1"}) {
		t.Fatalf("fallback: %+v", last)
	}
	if len(a.WebLink) == 0 || a.WebLink[0].URL != "https://192.0.2.11:7721" {
		t.Fatalf("weblink: %+v", a.WebLink)
	}
	if a.TURN[0].Host != "192.0.2.11" || a.TURN[0].Port != 3478 {
		t.Fatalf("turn: %+v", a.TURN)
	}
	// Link over QUIC: only the entry points that have it, as Link lists them
	if len(a.LinkQUIC) != 1 || a.LinkQUIC[0].ID != "edge-sg" || a.LinkQUIC[0].Host != "192.0.2.11" || a.LinkQUIC[0].Port != 7724 {
		t.Fatalf("link_quic: %+v", a.LinkQUIC)
	}
}

func TestSignedQuery(t *testing.T) {
	l := startSingle(t)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	sig := lbsapi.Sign("0123456789abcdef0123", "signed", "", "5.0.0", "", ts)
	code, _ := query(t, l, "appkey=signed&sdk=5.0.0&ts="+ts+"&sig="+sig, "")
	if code != 200 {
		t.Fatalf("signed: %d", code)
	}
	code, _ = query(t, l, "appkey=signed&sdk=5.0.1&ts="+ts+"&sig="+sig, "")
	if code != 401 {
		t.Fatalf("tampered: %d", code)
	}
	old := strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)
	code, _ = query(t, l, "appkey=signed&sdk=5.0.0&ts="+old+"&sig="+lbsapi.Sign("0123456789abcdef0123", "signed", "", "5.0.0", "", old), "")
	if code != 401 {
		t.Fatalf("stale: %d", code)
	}
}

func dnsQuery(t *testing.T, l *LBS, name string, qtype uint16, ecs string, tcp bool) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if ecs != "" {
		m.SetEdns0(1232, false)
		_, n, _ := net.ParseCIDR(ecs)
		ones, _ := n.Mask.Size()
		sub := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(ones), Address: n.IP.To4()}
		m.IsEdns0().Option = append(m.IsEdns0().Option, sub)
	}
	c := &dns.Client{Timeout: 2 * time.Second}
	if tcp {
		c.Net = "tcp"
	}
	r, _, err := c.Exchange(m, l.DNSAddr().String())
	if err != nil {
		t.Fatalf("dns %s: %v", name, err)
	}
	return r
}

func TestDNS(t *testing.T) {
	l := startSingle(t)
	// ECS from Germany: Frankfurt first, scope from the database's /24
	r := dnsQuery(t, l, "link.demo.lbs.test.", dns.TypeA, "9.9.9.0/24", false)
	if r.Rcode != dns.RcodeSuccess || !r.Authoritative || len(r.Answer) == 0 {
		t.Fatalf("answer: %v", r)
	}
	if a := r.Answer[0].(*dns.A); a.A.String() != "192.0.2.12" || a.Hdr.Ttl != 20 {
		t.Fatalf("first A %v", r.Answer[0])
	}
	var scope uint8 = 255
	for _, o := range r.IsEdns0().Option {
		if s, ok := o.(*dns.EDNS0_SUBNET); ok {
			scope = s.SourceScope
		}
	}
	if scope != 24 {
		t.Fatalf("ECS scope %d, want 24", scope)
	}
	// ECS from Singapore
	r = dnsQuery(t, l, "link.demo.lbs.test.", dns.TypeA, "101.0.5.0/24", false)
	if a := r.Answer[0].(*dns.A); a.A.String() != "192.0.2.11" {
		t.Fatalf("sg first A %v", r.Answer[0])
	}
	// SRV with additional addresses, over TCP
	r = dnsQuery(t, l, "_link._tcp.demo.lbs.test.", dns.TypeSRV, "101.0.5.0/24", true)
	if len(r.Answer) < 2 || r.Answer[0].(*dns.SRV).Target != "edge-sg.ep.lbs.test." || r.Answer[0].(*dns.SRV).Port != 7720 || len(r.Extra) < 2 {
		t.Fatalf("srv: %v", r)
	}
	// TXT carries the policy version
	r = dnsQuery(t, l, "link.demo.lbs.test.", dns.TypeTXT, "", false)
	if !strings.Contains(r.String(), "policy_version=1") {
		t.Fatalf("txt: %v", r)
	}
	// entry point names
	r = dnsQuery(t, l, "edge-syd.ep.lbs.test.", dns.TypeAAAA, "", false)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.AAAA).AAAA.String() != "2001:db8::14" {
		t.Fatalf("aaaa: %v", r)
	}
	// unknown app, outside the zone, apex SOA
	if r = dnsQuery(t, l, "link.nope.lbs.test.", dns.TypeA, "", false); r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 {
		t.Fatalf("nxdomain: %v", r)
	}
	if r = dnsQuery(t, l, "example.com.", dns.TypeA, "", false); r.Rcode != dns.RcodeRefused {
		t.Fatalf("refused: %v", r)
	}
	if r = dnsQuery(t, l, "lbs.test.", dns.TypeSOA, "", false); len(r.Answer) != 1 {
		t.Fatalf("soa: %v", r)
	}
	// malformed bytes: FORMERR with the query's id, or dropped; the server lives on
	conn, _ := net.Dial("udp", l.DNSAddr().String())
	defer conn.Close()
	conn.Write([]byte{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff})
	conn.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	if err != nil || n < 12 || buf[0] != 0x12 || buf[1] != 0x34 || buf[3]&0x0f != dns.RcodeFormatError {
		t.Fatalf("formerr: %v %x", err, buf[:n])
	}
	if r = dnsQuery(t, l, "link.demo.lbs.test.", dns.TypeA, "", false); r.Rcode != dns.RcodeSuccess {
		t.Fatal("server broken after malformed query")
	}
}

// TestDNSDualStack: a server on [::] answers IPv4 clients (v4-mapped on the
// socket, replied to as IPv4 destinations in a batch) and IPv6 clients.
func TestDNSDualStack(t *testing.T) {
	if c, err := net.ListenPacket("udp", "[::1]:0"); err != nil {
		t.Skip("no IPv6 loopback:", err)
	} else {
		c.Close()
	}
	l := startSingle(t, func(c *Config) { c.DNS.Listen = "[::]:0" })
	_, port, _ := net.SplitHostPort(l.DNSAddr().String())
	for _, host := range []string{"127.0.0.1", "::1"} {
		m := new(dns.Msg)
		m.SetQuestion("link.demo.lbs.test.", dns.TypeA)
		c := &dns.Client{Timeout: 2 * time.Second}
		r, _, err := c.Exchange(m, net.JoinHostPort(host, port))
		if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
			t.Fatalf("from %s: %v %v", host, r, err)
		}
	}
}

func TestDNSTruncation(t *testing.T) {
	l := startSingle(t)
	// a big answer (many TXT strings) over UDP without EDNS is truncated
	doc := strings.Replace(string(mustRead(t, "testdata/policy.yaml")), "defaults: {count: 2, ttl: 20s}", "defaults: {count: 16, ttl: 20s}", 1)
	var b strings.Builder
	var extra []string
	for i := range 12 {
		extra = append(extra, fmt.Sprintf("edge-x%d", i))
	}
	doc = strings.Replace(doc, "entry_points: [edge-sg, edge-fra, edge-usw, edge-syd]", "entry_points: [edge-sg, edge-fra, edge-usw, edge-syd, "+strings.Join(extra, ", ")+"]", 1)
	doc = strings.Replace(doc, "entry_points:\n", "entry_points:\n"+func() string {
		var s string
		for i, id := range extra {
			s += fmt.Sprintf("  - {id: %s, site: x%d, lat: 0, lon: 0, link: \"198.51.100.%d:7720\"}\n", id, i, i+1)
		}
		return s
	}(), 1)
	b.WriteString(doc)
	if _, err := l.ApplyPolicy(t.Context(), []byte(b.String()), "test"); err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	m.SetQuestion("link.demo.lbs.test.", dns.TypeTXT)
	c := &dns.Client{Timeout: 2 * time.Second, UDPSize: 512}
	r, _, err := c.Exchange(m, l.DNSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	if !r.Truncated {
		t.Fatalf("not truncated: %d bytes", r.Len())
	}
	c.Net = "tcp"
	r, _, err = c.Exchange(m, l.DNSAddr().String())
	if err != nil || r.Truncated || len(r.Answer) < 7 {
		t.Fatalf("tcp: %v %v", err, r)
	}
}

func TestResolveJSON(t *testing.T) {
	l := startSingle(t)
	code, b := httpGet(t, "http://"+l.ClientAddr().String()+"/resolve?name=link.demo.lbs.test&type=A&edns_client_subnet=8.8.8.0/24", nil)
	if code != 200 {
		t.Fatal(code, string(b))
	}
	var r resolveAnswer
	json.Unmarshal(b, &r)
	if r.Status != 0 || len(r.Answer) == 0 || r.Answer[0].Data != "192.0.2.13" || r.Answer[0].Type != 1 {
		t.Fatalf("%s", b)
	}
	code, _ = httpGet(t, "http://"+l.ClientAddr().String()+"/resolve?name="+url.QueryEscape(strings.Repeat("a.", 200)), nil)
	if code != 400 {
		t.Fatal("long name accepted", code)
	}
}

func TestAdminAPI(t *testing.T) {
	l := startSingle(t)
	a := newAdmin(t, l, testAdminToken)
	// auth
	if code, _ := newAdmin(t, l, "wrong-token-xxxxxxxxxxxx").do("GET", "/v1/policy", nil); code != 401 {
		t.Fatalf("bad token: %d", code)
	}
	if code, _ := newAdmin(t, l, testNodeToken).do("GET", "/v1/policy", nil); code != 401 {
		t.Fatalf("node token on operator call: %d", code)
	}
	// get shows the policy, secrets redacted
	code, b := a.do("GET", "/v1/policy?consistent=1", nil)
	if code != 200 || !strings.Contains(string(b), "edge-sg") || strings.Contains(string(b), "0123456789abcdef0123") {
		t.Fatalf("get: %d %s", code, b)
	}
	// validate rejects a bad document with all problems
	code, b = a.do("POST", "/v1/policy/validate", []byte("apps: [{appkey: Bad, pools: [nope]}]\npools: []\nentry_points: []\n"))
	if code != 422 || !strings.Contains(string(b), "appkey") || !strings.Contains(string(b), "unknown pool") {
		t.Fatalf("validate: %d %s", code, b)
	}
	// scenario 3: fence acme to its dedicated pool; diff, apply, versioned and audited
	doc := string(mustRead(t, "testdata/policy.yaml")) + `  - name: acme
    match: {appkeys: [acme]}
    pools: [acme-dedicated]
`
	code, b = a.do("POST", "/v1/policy/diff", []byte(doc))
	if code != 200 || !strings.Contains(string(b), "+ ") || !strings.Contains(string(b), "acme-dedicated") {
		t.Fatalf("diff: %d %s", code, b)
	}
	var applied struct{ Version uint64 }
	if code := a.json("POST", "/v1/policy/apply?comment=fence+acme", []byte(doc), &applied); code != 200 || applied.Version != 2 {
		t.Fatalf("apply: %d %+v", code, applied)
	}
	_, ans := query(t, l, "appkey=acme", "101.0.0.7")
	if ids := linkIDs(ans); !slices.Equal(ids, []string{"acme-gw"}) {
		t.Fatalf("acme answer %v", ids)
	}
	_, ans = query(t, l, "appkey=demo", "101.0.0.7")
	if slices.Contains(linkIDs(ans), "acme-gw") {
		t.Fatal("demo sees acme's pool")
	}
	var hist []struct {
		Version uint64
		Who     string
		Comment string
	}
	a.json("GET", "/v1/policy/history", nil, &hist)
	if len(hist) != 2 || hist[1].Who != "operator:admin" || hist[1].Comment != "fence acme" {
		t.Fatalf("history: %+v", hist)
	}
	code, b = a.do("GET", "/v1/policy?version=1", nil)
	if code != 200 || strings.Contains(string(b), "acme-dedicated]") && strings.Contains(string(b), "name: acme\n") {
		t.Fatalf("version 1: %s", b)
	}
	// explain
	var ex ExplainResult
	a.json("GET", "/v1/explain?appkey=demo&ip=9.9.9.9&sdk=5.2.1&env=beta", nil, &ex)
	if ex.Rule != "canary" || len(ex.Steps) < 6 || ex.Candidates[0] != "canary-sg" || ex.Sites["canary-sg"] != "canary" {
		t.Fatalf("explain: %+v", ex)
	}
	// drain is audited and takes the node out
	if code, b := a.do("POST", "/v1/nodes/edge-sg/drain", nil); code != 200 {
		t.Fatalf("drain: %d %s", code, b)
	}
	_, ans = query(t, l, "appkey=demo", "101.0.0.7")
	if slices.Contains(linkIDs(ans), "edge-sg") {
		t.Fatal("drained node still listed")
	}
	var audit []struct{ Who, Op, What string }
	a.json("GET", "/v1/audit", nil, &audit)
	if len(audit) < 3 || audit[len(audit)-1].Op != "drain" || audit[len(audit)-1].Who != "operator:admin" {
		t.Fatalf("audit: %+v", audit)
	}
	// tokens: an operator token created through the API works; removed, it doesn't
	var tok struct{ Token string }
	if code := a.json("POST", "/v1/tokens", []byte(`{"id":"ops2","kind":"operator"}`), &tok); code != 200 || tok.Token == "" {
		t.Fatal("token add", code)
	}
	if code, _ := newAdmin(t, l, tok.Token).do("GET", "/v1/nodes", nil); code != 200 {
		t.Fatal("new token refused", code)
	}
	a.do("DELETE", "/v1/tokens/ops2", nil)
	if code, _ := newAdmin(t, l, tok.Token).do("GET", "/v1/nodes", nil); code != 401 {
		t.Fatal("removed token accepted", code)
	}
	// snapshot + restore round trip
	code, snap := a.do("POST", "/v1/raft/snapshot", nil)
	if code != 200 {
		t.Fatalf("snapshot: %d %s", code, snap)
	}
	a.do("POST", "/v1/policy/apply", mustRead(t, "testdata/policy.yaml"))
	if code, b := a.do("POST", "/v1/raft/restore", snap); code != 200 {
		t.Fatalf("restore: %d %s", code, b)
	}
	_, ans = query(t, l, "appkey=acme", "101.0.0.7")
	if ids := linkIDs(ans); !slices.Equal(ids, []string{"acme-gw"}) {
		t.Fatalf("after restore acme answer %v", ids)
	}
	var st struct {
		State   string
		Servers []struct{ ID string }
	}
	a.json("GET", "/v1/raft", nil, &st)
	if st.State != "Leader" || len(st.Servers) != 1 {
		t.Fatalf("raft status %+v", st)
	}
}

func TestHeartbeatsAndHysteresis(t *testing.T) {
	l := startSingle(t)
	n := newAdmin(t, l, testNodeToken)
	beat := func(conns int, draining bool) lbsapi.HeartbeatReply {
		var r lbsapi.HeartbeatReply
		b, _ := json.Marshal(lbsapi.Heartbeat{Node: "edge-sg", Connections: conns, Draining: draining})
		if code := n.json("POST", lbsapi.PathHeartbeat, b, &r); code != 200 {
			t.Fatalf("heartbeat: %d", code)
		}
		return r
	}
	state := func() string { return l.fsm.Current().State.Health["edge-sg"].State }
	waitState := func(want string, keepBeating func()) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for state() != want {
			if time.Now().After(deadline) {
				t.Fatalf("state %q, want %q", state(), want)
			}
			if keepBeating != nil {
				keepBeating()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	beat(1, false)
	if state() != "" {
		t.Fatal("one beat committed a transition (up_after is 2)")
	}
	waitState("up", func() { beat(1, false) })
	// overload: 95 of capacity 100 → overloaded, shed from answers
	waitState("overloaded", func() { beat(95, false) })
	_, ans := query(t, l, "appkey=demo", "101.0.0.7")
	if linkIDs(ans)[0] == "edge-sg" {
		t.Fatal("overloaded node first")
	}
	// 85 is inside the hysteresis band: stays overloaded
	for range 5 {
		beat(85, false)
		time.Sleep(30 * time.Millisecond)
	}
	if state() != "overloaded" {
		t.Fatalf("left overload inside the band: %s", state())
	}
	waitState("up", func() { beat(10, false) })
	// stop beating: down after 3 missed intervals
	waitState("down", nil)
	_, ans = query(t, l, "appkey=demo", "101.0.0.7")
	if slices.Contains(linkIDs(ans), "edge-sg") {
		t.Fatal("down node listed")
	}
	waitState("up", func() { beat(1, false) })
	// the node drains itself, then comes back
	beat(1, true)
	deadline := time.Now().Add(3 * time.Second)
	for l.fsm.Current().State.Drained["edge-sg"] == "" {
		if time.Now().After(deadline) {
			t.Fatal("self-drain not committed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for l.fsm.Current().State.Drained["edge-sg"] != "" {
		if time.Now().After(deadline.Add(3 * time.Second)) {
			t.Fatal("node not undrained after reporting again")
		}
		beat(1, false)
		time.Sleep(50 * time.Millisecond)
	}
	// a heartbeat for an unknown node is refused
	b, _ := json.Marshal(lbsapi.Heartbeat{Node: "nope"})
	if code, _ := n.do("POST", lbsapi.PathHeartbeat, b); code != 404 {
		t.Fatal("unknown node accepted", code)
	}
}

var _ = fmt.Sprint

// TestQueryReadableFromBrowsers: the Web SDK asks from the app's page, so
// every client-port answer (errors too) lets any origin read it.
func TestQueryReadableFromBrowsers(t *testing.T) {
	l := startSingle(t)
	for _, params := range []string{"appkey=demo", "appkey=nope"} {
		req, _ := http.NewRequest("GET", "http://"+l.ClientAddr().String()+lbsapi.PathQuery+"?"+params, nil)
		req.Header.Set("Origin", "https://app.example.com")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "*" {
			t.Errorf("%s: Access-Control-Allow-Origin %q, want *", params, got)
		}
	}
}
