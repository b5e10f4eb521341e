package weblink

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestTestSuiteServerPaths: `longlink weblink-testsuite` serves the
// Socket.IO reference behaviour at /socket.io/ and the Engine.IO echo at
// /engine.io/, as the two published protocol test suites expect.
func TestTestSuiteServerPaths(t *testing.T) {
	ts := NewTestSuiteServer("127.0.0.1:0", nil)
	if err := ts.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = ts.Shutdown(ctx)
	})
	hc := &http.Client{Timeout: 5 * time.Second}
	base := "http://" + ts.Addr().String()
	post := func(url, body string) string {
		resp, err := hc.Post(url, "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	get := func(url string) string {
		resp, err := hc.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
		}
		return string(b)
	}
	sidOf := func(open string) string {
		_, rest, _ := strings.Cut(open, `"sid":"`)
		sid, _, _ := strings.Cut(rest, `"`)
		return sid
	}
	// Engine.IO: a message comes back as it was sent.
	u := base + "/engine.io/?EIO=4&transport=polling"
	u += "&sid=" + sidOf(get(u))
	if r := post(u, "4hello"); r != "ok" {
		t.Fatalf("engine.io post: %q", r)
	}
	if r := get(u); r != "4hello" {
		t.Fatalf("engine.io echo: %q", r)
	}
	// Socket.IO: CONNECT, then the suite's "auth" event.
	u = base + "/socket.io/?EIO=4&transport=polling"
	u += "&sid=" + sidOf(get(u))
	post(u, "40")
	r := get(u)
	if !strings.HasPrefix(r, `40{"sid":"`) {
		t.Fatalf("socket.io connect: %q", r)
	}
	if !strings.Contains(r, `42["auth",{}]`) {
		r = get(u)
	}
	if !strings.HasSuffix(r, `42["auth",{}]`) {
		t.Fatalf("socket.io auth event: %q", r)
	}
}
