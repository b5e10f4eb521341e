package edge

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/url"
	"time"

	"github.com/longlink/longlink/pkg/certfiles"
	"github.com/longlink/longlink/relay/wire"
)

// WebLink at the edge: the browser's HTTP (or HTTPS, when the edge ends
// TLS) is carried byte for byte through one tunnel stream per connection.
// The edge reads each connection's first request line so that every
// request of one Socket.IO session takes the same path: the sid of a
// polling request or of the WebSocket upgrade is the stream's affinity
// key, and the sid the server hands out in answer to a handshake is
// remembered for the path the handshake took.

// webTLS ends browsers' TLS on the WebLink listener.
type webTLS struct {
	config *tls.Config
	certs  *certfiles.Store
	every  time.Duration
}

func newWebTLS(c *ListenerTLS) (*webTLS, error) {
	store, err := certfiles.Load(c.Certificates)
	if err != nil {
		return nil, err
	}
	return &webTLS{
		certs: store,
		every: c.ReloadInterval.D(),
		config: &tls.Config{
			GetCertificate: store.GetCertificate,
			MinVersion:     c.minVersion(),
			// The tunnel carries HTTP/1.1 to the gateway (WebSocket
			// upgrades included): never offer h2.
			NextProtos: []string{"http/1.1"},
		},
	}, nil
}

// reloadCerts reads the certificate files again every interval until the
// edge stops.
func (e *Edge) reloadCerts() {
	defer e.wg.Done()
	t := time.NewTicker(e.webTLS.every)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		}
		changed, err := e.webTLS.certs.Reload()
		switch {
		case err != nil:
			e.m.tlsReloads.WithLabelValues("error").Inc()
			e.log.Error("weblink certificates not reloaded; still serving the previous ones", "err", err)
		case changed:
			e.m.tlsReloads.WithLabelValues("ok").Inc()
			e.log.Info("weblink certificates reloaded")
			e.exportCertExpiry()
		}
	}
}

func (e *Edge) exportCertExpiry() {
	e.m.tlsExpiry.Reset()
	for _, c := range e.webTLS.certs.Certs() {
		e.m.tlsExpiry.WithLabelValues(c.CertFile).Set(float64(c.NotAfter.Unix()))
	}
}

// webRequest is a WebLink connection's first request, as far as the edge
// reads it.
type webRequest struct {
	conn      net.Conn  // the client's connection (its TLS end, when the edge ends TLS)
	body      io.Reader // everything the client sends, the request line included
	sid       string    // the request's Socket.IO session id, if any
	handshake bool      // an Engine.IO handshake: its answer names the new session's sid
}

// readWebRequest ends TLS when configured and reads the first request line
// within the first-byte timeout. The result names what went wrong for the
// session counter.
func (e *Edge) readWebRequest(c net.Conn) (*webRequest, string) {
	_ = c.SetDeadline(time.Now().Add(e.live.Load().Limits.FirstByteTimeout.D()))
	if e.webTLS != nil {
		tc := tls.Server(c, e.webTLS.config)
		if err := tc.Handshake(); err != nil {
			e.log.Debug("weblink: TLS handshake", "client", c.RemoteAddr().String(), "err", err)
			return nil, "tls"
		}
		c = tc
	}
	br := bufio.NewReaderSize(c, 4096)
	line, err := br.ReadSlice('\n')
	_ = c.SetDeadline(time.Time{})
	if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, "no_request"
	}
	r := &webRequest{conn: c}
	r.sid, r.handshake = engineIORequest(line)
	r.body = io.MultiReader(bytes.NewReader(bytes.Clone(line)), br)
	return r, ""
}

// engineIORequest reads an HTTP request line ("GET
// /socket.io/?EIO=4&transport=polling&sid=abc HTTP/1.1"): the sid query
// parameter, and whether it is an Engine.IO handshake (a polling request
// with EIO and no sid).
func engineIORequest(line []byte) (sid string, handshake bool) {
	parts := bytes.SplitN(bytes.TrimSpace(line), []byte(" "), 3)
	if len(parts) < 2 {
		return "", false
	}
	u, err := url.ParseRequestURI(string(parts[1]))
	if err != nil {
		return "", false
	}
	q := u.Query()
	sid = q.Get("sid")
	if len(sid) > wire.MaxAffinityLen {
		sid = ""
	}
	handshake = !q.Has("sid") && q.Has("EIO") && q.Get("transport") == "polling"
	return sid, handshake
}

// sidSniffer passes the answer to an Engine.IO handshake through and reads
// the new session's sid from its first bytes: `0{"sid":"…",…}` after the
// HTTP headers. It gives up after the first 4 KiB.
type sidSniffer struct {
	r     io.Reader
	seen  []byte
	done  bool
	found func(sid string)
}

const sniffLimit = 4096

func (s *sidSniffer) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if !s.done && n > 0 {
		s.seen = append(s.seen, p[:n]...)
		if sid, ok := handshakeSid(s.seen); ok {
			s.done = true
			if sid != "" {
				s.found(sid)
			}
		} else if len(s.seen) >= sniffLimit {
			s.done = true
		}
		if s.done {
			s.seen = nil
		}
	}
	return n, err
}

var openPacket = []byte(`{"sid":"`)

// handshakeSid finds the sid in the start of an HTTP answer to an Engine.IO
// handshake. ok is false while more bytes could still bring it; sid is
// empty when the answer has none.
func handshakeSid(b []byte) (sid string, ok bool) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return "", false
	}
	body := b[end+4:]
	if !bytes.HasPrefix(b, []byte("HTTP/1.1 200")) && !bytes.HasPrefix(b, []byte("HTTP/1.0 200")) {
		return "", true
	}
	i := bytes.Index(body, openPacket)
	if i < 0 {
		// The open packet comes first in the body (after a chunk size
		// line at most): not there within a few bytes, it is not coming.
		return "", len(body) > 64
	}
	rest := body[i+len(openPacket):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return "", len(rest) > wire.MaxAffinityLen
	}
	sid = string(rest[:j])
	if sid == "" || len(sid) > wire.MaxAffinityLen || !sidChars(sid) {
		return "", true
	}
	return sid, true
}

// sidChars accepts what Engine.IO servers put in a sid (base64url and the
// like), nothing that would need escaping.
func sidChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' || c == '=') {
			return false
		}
	}
	return true
}
