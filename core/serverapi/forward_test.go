package serverapi

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// FuzzForward feeds bus messages, as a front (or anything on the bus)
// could send them, to the service node's decoder, and replies to the
// front's.
func FuzzForward(f *testing.F) {
	f.Add("POST", "/v1/users?x=1", "app1", []byte(`{"account":"a"}`), "200")
	f.Add("GET", "//evil.example/v1", "", []byte{}, "99")
	f.Add("DELETE", "/v1/users/a b", "x y", []byte{0xff}, "503")
	f.Add("PATCH", "/v1/groups/g#frag", "k", []byte("{}"), "-1")
	f.Fuzz(func(t *testing.T, method, target, appkey string, body []byte, status string) {
		m := nats.NewMsg("x")
		m.Header.Set(hdrMethod, method)
		m.Header.Set(hdrTarget, target)
		m.Header.Set(HeaderAppKey, appkey)
		m.Data = body
		r, err := decodeForward(context.Background(), m, 64<<10)
		if err == nil {
			if r.URL.Host != "serverapi" || r.RequestURI != target || r.Method != method {
				t.Fatalf("decoded %s %s host %s from %q %q", r.Method, r.RequestURI, r.URL.Host, method, target)
			}
		}
		m = &nats.Msg{Header: nats.Header{}, Data: body}
		m.Header.Set(hdrStatus, status)
		m.Header.Set("Location", target)
		if code, h, _, err := decodeReply(m); err == nil && (code < 100 || code > 599 || h == nil) {
			t.Fatalf("status %q decoded as %d", status, code)
		}
	})
}

// TestForwardRoundTrip: what the front encodes the service node decodes
// to the same request, signature headers included.
func TestForwardRoundTrip(t *testing.T) {
	h := http.Header{}
	Sign(&http.Request{Method: "POST", Header: h, URL: mustURL(t, "/v1/users?a=1")}, "app1", "secret-0123456789", "n1", time.Now(), []byte("{}"))
	h.Set("X-Other", "not forwarded")
	m := encodeForward("subj", "POST", "/v1/users?a=1", h, []byte("{}"))
	r, err := decodeForward(context.Background(), m, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if r.RequestURI != "/v1/users?a=1" || r.URL.Path != "/v1/users" || r.Header.Get(HeaderChecksum) != h.Get(HeaderChecksum) || r.Header.Get("X-Other") != "" {
		t.Fatalf("decoded %+v", r)
	}
	if _, err := decodeForward(context.Background(), m, 1); err == nil {
		t.Fatal("a body above the cap decoded")
	}
}

func mustURL(t *testing.T, target string) *url.URL {
	u, err := url.ParseRequestURI(target)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
