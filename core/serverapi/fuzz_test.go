package serverapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// FuzzRequestBodies sends arbitrary JSON bodies, signed, to every route of
// the server API that reads one, against the real service node (bus,
// services, SQLite store): a body is answered 200 or with a 4xx and an
// imapi error, never with a 5xx, a crash or a body that is not JSON.
func FuzzRequestBodies(f *testing.F) {
	e := newEnv(f)
	var routes []struct{ method, target string }
	for _, rt := range e.srv.Routes() {
		if rt.Method != http.MethodPost && rt.Method != http.MethodPut && rt.Method != http.MethodPatch {
			continue
		}
		// Path parameters become valid names, so that requests reach
		// the body decoders behind them.
		target := rt.Pattern
		for {
			i := strings.IndexByte(target, '{')
			j := strings.IndexByte(target, '}')
			if i < 0 || j < i {
				break
			}
			target = target[:i] + "fz" + target[j+1:]
		}
		routes = append(routes, struct{ method, target string }{rt.Method, target})
	}
	if len(routes) < 10 {
		f.Fatalf("only %d routes with a body", len(routes))
	}
	for i := range routes {
		for _, body := range []string{`{}`, `{"account":"fz","name":"Fuzz"}`, `{"from":"fz","to":"fz","type":"text","body":{"text":"hi"}}`,
			`{"accounts":["fz","a"],"name":"g"}`, `[]`, `null`, `{"account":"` + strings.Repeat("x", 70) + `"}`} {
			f.Add(uint8(i), []byte(body))
		}
	}
	f.Fuzz(func(t *testing.T, pick uint8, body []byte) {
		rt := routes[int(pick)%len(routes)]
		status, b := e.doAs(t, rt.method, rt.target, body, nil)
		if status >= 500 {
			t.Fatalf("%s %s %q: %d %s", rt.method, rt.target, body, status, b)
		}
		if !json.Valid(b) {
			t.Fatalf("%s %s %q: %d, body not JSON: %q", rt.method, rt.target, body, status, b)
		}
		if status != http.StatusOK {
			var er struct {
				Code int `json:"code"`
			}
			if json.Unmarshal(b, &er) != nil || er.Code == 0 {
				t.Fatalf("%s %s %q: %d without an error code: %s", rt.method, rt.target, body, status, b)
			}
		}
	})
}
