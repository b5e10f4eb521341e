package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzHTTPRequest feeds arbitrary HTTP requests to the layer above the
// Engine.IO parser (query, method, Origin, Content-Type, upgrade headers,
// polling bodies), each for a fresh session whose sid replaces "SID" in
// the query. The server answers every one in time with a status the
// reference would use, and errors carry the reference's JSON body.
func FuzzHTTPRequest(f *testing.F) {
	srv := New(Config{PingInterval: 20 * time.Millisecond, PingTimeout: 20 * time.Millisecond, MaxPayload: 1000,
		AllowedOrigins: []string{"http://allowed.example"}, Namespaces: []string{"/admin"}}, &EchoHandler{}, nil, nil)
	f.Cleanup(srv.Close)
	f.Add("POST", "EIO=4&transport=polling&sid=SID", "", "text/plain;charset=UTF-8", false, []byte("40\x1e42[\"echo\",1]"))
	f.Add("POST", "EIO=4&transport=polling&sid=SID", "http://allowed.example", "application/octet-stream", false, []byte{0, 1, 2})
	f.Add("GET", "EIO=4&transport=polling&sid=SID", "", "", false, []byte(nil))
	f.Add("GET", "EIO=4&transport=polling", "http://evil.example", "", false, []byte(nil))
	f.Add("OPTIONS", "EIO=4&transport=polling", "http://allowed.example", "", false, []byte(nil))
	f.Add("GET", "EIO=4&transport=websocket&sid=SID", "", "", true, []byte(nil))
	f.Add("PUT", "EIO=3&transport=polling&sid=SID&j=1", "null", "", false, []byte("bAQID"))
	f.Add("POST", "EIO=4&transport=polling&sid=SID&sid=x", "", "", false, []byte("4"+strings.Repeat("x", 2000)))
	f.Fuzz(func(t *testing.T, method, query, origin, ctype string, upgrade bool, body []byte) {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, httptest.NewRequest("GET", "/socket.io/?EIO=4&transport=polling", nil))
		var open struct {
			SID string `json:"sid"`
		}
		if w.Code != 200 || json.Unmarshal(w.Body.Bytes()[1:], &open) != nil {
			t.Fatalf("handshake: %d %q", w.Code, w.Body)
		}
		r := &http.Request{Method: method, URL: &url.URL{Path: "/socket.io/", RawQuery: strings.ReplaceAll(query, "SID", open.SID)},
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}, Host: "weblink.example",
			RemoteAddr: "192.0.2.1:1234", Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}
		if origin != "" {
			r.Header["Origin"] = []string{origin}
		}
		if ctype != "" {
			r.Header["Content-Type"] = []string{ctype}
		}
		if upgrade {
			r.Header.Set("Connection", "Upgrade")
			r.Header.Set("Upgrade", "websocket")
			r.Header.Set("Sec-WebSocket-Version", "13")
			r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		}
		w = httptest.NewRecorder()
		done := make(chan struct{})
		go func() { defer close(done); srv.ServeHTTP(w, r) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s ?%s: no answer in 5s (the session's heartbeat ends a poll within 40ms)", method, query)
		}
		switch w.Code {
		case 200, 204, 400, 403, 413, 500:
		default:
			t.Fatalf("%s ?%s: status %d %q", method, query, w.Code, w.Body)
		}
		if w.Header().Get("Content-Type") == "application/json" {
			var e struct {
				Code    *int   `json:"code"`
				Message string `json:"message"`
			}
			if json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Code == nil || e.Message == "" {
				t.Fatalf("%s ?%s: error body %q", method, query, w.Body)
			}
		}
	})
}
