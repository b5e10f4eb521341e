package lbs

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/longlink/longlink/lbs/lbsapi"
)

// encodingJSON is what writeJSON (encoding/json's Encoder) sends for v.
func encodingJSON(t testing.TB, v any) []byte {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestAppendAnswer(t *testing.T) {
	full := lbsapi.Answer{AppKey: "demo", Rule: "canary", PolicyVersion: 4, RaftIndex: 311, StalenessMs: 12, TTL: 30,
		ClientIP: "203.0.113.9", Country: "SG",
		Link: []lbsapi.Endpoint{{ID: "edge-sg-1", Site: "sg-a", Host: "203.0.113.10", Port: 7720, Weight: 100, KeyIDs: []string{"k2026", "k2027"}},
			{ID: "core-sh-1", Site: "core-sh", Host: "192.0.2.10", Port: 7710, Weight: 100, Fallback: true}},
		LinkQUIC: []lbsapi.Endpoint{{ID: "edge-sg-1", Site: "sg-a", Host: "203.0.113.10", Port: 7724, Weight: 100, KeyIDs: []string{"k2026"}}},
		WebLink:  []lbsapi.Endpoint{{ID: "edge-sg-1", Site: "sg-a", URL: "https://sg1.edge.example.com/?a=1&b=<2>", Weight: 0}},
		TURN:     []lbsapi.Endpoint{{ID: "edge-sg-1", Site: "sg-a", Host: "2001:db8::1", Port: 3478, Weight: -3, KeyIDs: []string{}}},
		Source:   "cache"}
	cases := map[string]lbsapi.Answer{
		"full":           full,
		"nil lists":      {AppKey: "a", StalenessMs: -1},
		"empty lists":    {AppKey: "a", Link: []lbsapi.Endpoint{}, LinkQUIC: []lbsapi.Endpoint{}, WebLink: []lbsapi.Endpoint{}, TURN: []lbsapi.Endpoint{}},
		"escapes":        {AppKey: "q\"\\/\b\f\n\r\t\x00\x1f\x7f<>&", Rule: "\u2028\u2029 é 日本 \xff\xfe end", ClientIP: "\xe2\x80"},
		"max and min":    {PolicyVersion: 1<<64 - 1, RaftIndex: 1 << 63, StalenessMs: -1 << 63, TTL: -1},
		"unicode rule":   {Rule: "règle-🙂"},
		"fallback first": {Link: []lbsapi.Endpoint{{Fallback: true, Port: -1}}},
	}
	for name, a := range cases {
		got := appendAnswer(nil, &a)
		if want := encodingJSON(t, &a); !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
}

func FuzzAppendAnswer(f *testing.F) {
	f.Add("demo", "canary", "203.0.113.9", "SG", "edge-sg", "https://x/?a=<b>&c", "k1", uint64(4), int64(12), 7720, true)
	f.Add("", "\u2028", "\xff", "", "", "", "", uint64(0), int64(-1), 0, false)
	f.Fuzz(func(t *testing.T, appkey, rule, ip, country, id, u, key string, ver uint64, stale int64, port int, fb bool) {
		ep := lbsapi.Endpoint{ID: id, Site: rule, Host: ip, Port: port, URL: u, Weight: port / 3, Fallback: fb}
		if key != "" {
			ep.KeyIDs = []string{key, id}
		}
		a := lbsapi.Answer{AppKey: appkey, Rule: rule, PolicyVersion: ver, RaftIndex: ver / 2, StalenessMs: stale, TTL: port,
			ClientIP: ip, Country: country, Link: []lbsapi.Endpoint{ep, ep}, WebLink: []lbsapi.Endpoint{}, Source: key}
		if fb {
			a.LinkQUIC = []lbsapi.Endpoint{ep}
		}
		if got, want := appendAnswer(nil, &a), encodingJSON(t, &a); !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	})
}

// FuzzParseSDKQuery holds the allocation-free query reader to net/url's
// parsing followed by the map-based reader.
func FuzzParseSDKQuery(f *testing.F) {
	for _, s := range []string{"appkey=demo&sdk=5.1.0", "appkey=demo&env=beta&sdk=5.2.1&platform=ios&ts=1&sig=ab",
		"appkey=&appkey=demo", "appkey=de%6Do+x&env=%zz&env=b", "appkey=demo;x&appkey=demo", "ts=&ts=2&appkey=a&sig=%41&sig=b",
		"appkey=a&platform=" + strings.Repeat("p", 129), "&&appkey==x=y&", "appkey=a" + strings.Repeat("&x=1", 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, gerr := parseSDKQuery(raw)
		vs, _ := url.ParseQuery(raw)
		want, werr := sdkQueryFromValues(vs)
		if (gerr == nil) != (werr == nil) || gerr != nil && gerr.Error() != werr.Error() {
			t.Fatalf("%q: error %v, want %v", raw, gerr, werr)
		}
		if got != want {
			t.Fatalf("%q: %+v, want %+v", raw, got, want)
		}
	})
}

func TestParseSDKQueryAllocs(t *testing.T) {
	n := testing.AllocsPerRun(100, func() {
		if _, err := parseSDKQuery("appkey=demo&env=beta&sdk=5.2.1&platform=ios&ts=1700000000&sig=00ff"); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations, want 0", n)
	}
}

// clientIPSplit is the X-Forwarded-For walk as it was written with
// strings.Split: the reference for FuzzClientIP.
func clientIPSplit(l *LBS, peer netip.Addr, xff []string) netip.Addr {
	ip := peer
	if !l.isTrusted(ip) {
		return ip
	}
	for i := len(xff) - 1; i >= 0; i-- {
		parts := strings.Split(xff[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return ip
			}
			a = a.Unmap()
			if !l.isTrusted(a) {
				return a
			}
			ip = a
		}
	}
	return ip
}

func FuzzClientIP(f *testing.F) {
	l := &LBS{}
	l.live.Store(newLive(Config{TrustedProxies: []string{"127.0.0.0/8", "10.0.0.0/8"}}))
	f.Add("9.9.9.9, 10.0.0.1", "127.0.0.2")
	f.Add(",,", "")
	f.Add("\u00a01.1.1.1 ,::ffff:10.1.1.1", "10.0.0.3,garbage")
	f.Fuzz(func(t *testing.T, h1, h2 string) {
		req := httptest.NewRequest("GET", "/v1/lbs", nil)
		req.RemoteAddr = "127.0.0.1:5000"
		xff := []string{h1, h2}
		req.Header["X-Forwarded-For"] = xff
		if got, want := l.clientIP(req), clientIPSplit(l, netip.MustParseAddr("127.0.0.1"), xff); got != want {
			t.Fatalf("%q: %v, want %v", xff, got, want)
		}
	})
}
