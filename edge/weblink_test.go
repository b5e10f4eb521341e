package edge

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/pkg/certfiles"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/pki"
	"github.com/longlink/longlink/pkg/waittest"
)

// writeCert issues a certificate for names from ca into dir/file.pem and
// dir/file-key.pem.
func writeCert(t *testing.T, ca *pki.CA, dir, file string, names ...string) certfiles.Pair {
	t.Helper()
	p := certfiles.Pair{CertFile: filepath.Join(dir, file+".pem"), KeyFile: filepath.Join(dir, file+"-key.pem")}
	if err := ca.IssueFiles(p.CertFile, p.KeyFile, names[0], names[1:]...); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestWebLinkTLS: the edge ends browsers' TLS on the WebLink listener. The
// certificate follows the client's SNI; HTTPS polling and WSS reach the
// core with the client's address (PROXY v2); the sid the core hands out in
// answer to a handshake pins the session's path; a renewed certificate is
// served after a reload; a client that does not speak TLS is counted.
func TestWebLinkTLS(t *testing.T) {
	ca, err := pki.NewCA("test-web")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	chat := writeCert(t, ca, dir, "chat", "chat.example.test")
	wild := writeCert(t, ca, dir, "wild", "*.im.example.test")
	w := newWorld(t, "mem", memCreds(), func(c *Config) {
		c.WebLink.TLS = &ListenerTLS{Certificates: []certfiles.Pair{chat, wild}, ReloadInterval: config.Duration(time.Second)}
	})
	addr := w.edge.Addr("weblink").String()
	clientTLS := func(name string) *tls.Config {
		return &tls.Config{ServerName: name, RootCAs: ca.Pool(), NextProtos: []string{"h2", "http/1.1"}}
	}
	dial := func(t *testing.T, name string) *tls.Conn {
		t.Helper()
		c, err := tls.Dial("tcp", addr, clientTLS(name))
		if err != nil {
			t.Fatalf("TLS to the edge as %s: %v", name, err)
		}
		return c
	}

	t.Run("sni", func(t *testing.T) {
		for name, want := range map[string]string{"chat.example.test": "chat.example.test", "eu.im.example.test": "*.im.example.test"} {
			c := dial(t, name) // verified against the CA for name
			st := c.ConnectionState()
			c.Close()
			if cn := st.PeerCertificates[0].Subject.CommonName; cn != want {
				t.Errorf("SNI %s: certificate %s, want %s", name, cn, want)
			}
			if st.NegotiatedProtocol != "http/1.1" {
				t.Errorf("SNI %s: ALPN %q, want http/1.1 (the tunnel carries HTTP/1.1)", name, st.NegotiatedProtocol)
			}
		}
	})

	get := func(t *testing.T, path string) (body, local string) {
		t.Helper()
		return getOn(t, dial(t, "chat.example.test"), "chat.example.test", path)
	}

	t.Run("https polling carries the client's address", func(t *testing.T) {
		body, local := get(t, "/whoami?EIO=4&transport=polling&sid=tls-1")
		if body != local+" sid=tls-1" {
			t.Fatalf("HTTPS through the edge: %q, want client address %s", body, local)
		}
	})

	t.Run("handshake pins the session's path", func(t *testing.T) {
		body, _ := get(t, "/socket.io/?EIO=4&transport=polling&t=x1")
		m := regexp.MustCompile(`^0\{"sid":"([^"]+)"`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("handshake answer %q", body)
		}
		path := w.edge.Router().StickyPath(m[1])
		if path != "relay-1" && path != "relay-2" {
			t.Fatalf("sid %s from the handshake is pinned to %q", m[1], path)
		}
		// The session's next request (a new connection) takes that path.
		body, local := get(t, "/socket.io/?EIO=4&transport=polling&sid="+m[1])
		if body != local+" sid="+m[1] || w.edge.Router().StickyPath(m[1]) != path {
			t.Fatalf("polling with the sid: %q, path %q (handshake took %q)", body, w.edge.Router().StickyPath(m[1]), path)
		}
	})

	t.Run("wss", func(t *testing.T) {
		// The browser's name for the edge, resolved to its address.
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS("chat.example.test"),
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			}}}
		wsEcho(t, "wss://chat.example.test/ws?EIO=4&transport=websocket&sid=tls-1", &websocket.DialOptions{HTTPClient: hc})
	})

	t.Run("not tls", func(t *testing.T) {
		before := testutil.ToFloat64(w.edge.m.connections.WithLabelValues("weblink", "tls"))
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.Copy(io.Discard, c) // the edge closes it
		c.Close()
		waittest.Until(t, 5*time.Second, "the failed handshake counted", func() bool {
			return testutil.ToFloat64(w.edge.m.connections.WithLabelValues("weblink", "tls")) == before+1
		})
	})

	t.Run("reload", func(t *testing.T) {
		old := dial(t, "chat.example.test")
		oldSerial := old.ConnectionState().PeerCertificates[0].SerialNumber
		old.Close()
		writeCert(t, ca, dir, "chat", "chat.example.test", "new.example.test")
		waittest.Until(t, 10*time.Second, "the renewed certificate served", func() bool {
			c, err := tls.Dial("tcp", addr, clientTLS("new.example.test"))
			if err != nil {
				return false // served the old one, which does not name new.example.test
			}
			defer c.Close()
			return c.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(oldSerial) != 0
		})
		if n := testutil.ToFloat64(w.edge.m.tlsReloads.WithLabelValues("ok")); n < 1 {
			t.Fatalf("reloads counted: %v", n)
		}
		// A broken file leaves the working certificate in place.
		if err := os.WriteFile(chat.CertFile, []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
		waittest.Until(t, 10*time.Second, "the failed reload counted", func() bool {
			return testutil.ToFloat64(w.edge.m.tlsReloads.WithLabelValues("error")) >= 1
		})
		dial(t, "new.example.test").Close()
	})
}
