package weblink

import (
	"embed"
	"encoding/json"
	"net/http"
)

// web holds the demo page, the socket.io-client browser bundle, copied
// from the socket.io-client npm package (see web/socket.io-client.LICENSE),
// and the Web SDK's browser bundle, built from core/sdk/web; core/sdk/web's
// `npm run check`, run by `make test`, fails when either is not what that
// package's pinned socket.io-client and sources give. Nothing is fetched or
// built at run time.
//
//go:embed web/index.html web/socket.io.min.js web/longlink.min.js
var web embed.FS

func serveClientBundle(w http.ResponseWriter, r *http.Request) {
	serveScript(w, "web/socket.io.min.js")
}

func serveSDKBundle(w http.ResponseWriter, r *http.Request) {
	serveScript(w, "web/longlink.min.js")
}

func serveScript(w http.ResponseWriter, name string) {
	b, _ := web.ReadFile(name)
	w.Header().Set("Content-Type", "application/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(b)
}

func serveDemoPage(w http.ResponseWriter, r *http.Request) {
	b, _ := web.ReadFile("web/index.html")
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// connect-src: the SDK asks the LBS and races WebLink entry points on
	// other origins (the edge's, the core's).
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; connect-src 'self' http: https: ws: wss:")
	_, _ = w.Write(b)
}

// serveDemoConfig offers the demo logins the lead's dev setup provides.
func (w *WebLink) serveDemoConfig(rw http.ResponseWriter, r *http.Request) {
	out := struct {
		Users []DemoLogin `json:"users"`
		LBS   []string    `json:"lbs,omitempty"`
	}{Users: []DemoLogin{}, LBS: w.deps.DemoLBS}
	if w.deps.DemoLogins != nil {
		users, err := w.deps.DemoLogins(r.Context())
		if err != nil {
			http.Error(rw, "demo logins unavailable", http.StatusServiceUnavailable)
			return
		}
		out.Users = append(out.Users, users...)
	}
	rw.Header().Set("Content-Type", "application/json")
	rw.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(rw).Encode(out)
}
