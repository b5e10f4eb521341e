package serverapi

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/longlink/longlink/core/serverapi/internal/sign"
)

// The front forwards an HTTP request to a service node of the app's
// cluster as one NATS request: the method, the request-target exactly as
// sent (the signature covers it) and the headers the API reads travel as
// NATS headers, the body as the payload. The reply carries the status and
// the headers the API sets, and the body.
const (
	hdrMethod = "Ll-Method"
	hdrTarget = "Ll-Target"
	hdrStatus = "Ll-Status"
)

// forwarded are the HTTP headers that travel with a request; replied those
// that travel back.
var (
	forwarded = []string{sign.HeaderAppKey, sign.HeaderTimestamp, sign.HeaderNonce, sign.HeaderChecksum, "Content-Type"}
	replied   = []string{"Content-Type", "Location"}
)

const maxTarget = 4096

var methods = map[string]bool{http.MethodGet: true, http.MethodPost: true, http.MethodPut: true, http.MethodPatch: true, http.MethodDelete: true}

// encodeForward makes the bus message of an HTTP request.
func encodeForward(subject, method, target string, h http.Header, body []byte) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Header.Set(hdrMethod, method)
	m.Header.Set(hdrTarget, target)
	for _, k := range forwarded {
		if v := h.Get(k); v != "" {
			m.Header.Set(k, v)
		}
	}
	m.Data = body
	return m
}

var errForward = errors.New("serverapi: malformed forwarded request")

// decodeForward rebuilds the HTTP request of a bus message; body is capped
// at maxBody as the front caps it.
func decodeForward(ctx context.Context, m *nats.Msg, maxBody int64) (*http.Request, error) {
	method, target := m.Header.Get(hdrMethod), m.Header.Get(hdrTarget)
	if !methods[method] || len(target) == 0 || len(target) > maxTarget || target[0] != '/' || int64(len(m.Data)) > maxBody {
		return nil, errForward
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c == 0x7f || c == '#' {
			return nil, errForward
		}
	}
	r, err := http.NewRequestWithContext(ctx, method, "http://serverapi"+target, bytes.NewReader(m.Data))
	if err != nil || r.URL.Host != "serverapi" {
		return nil, errForward
	}
	r.RequestURI = target
	for _, k := range forwarded {
		if v := m.Header.Get(k); v != "" {
			r.Header.Set(k, v)
		}
	}
	return r, nil
}

// recorder is the http.ResponseWriter of a forwarded request.
type recorder struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{h: http.Header{}} }

func (r *recorder) Header() http.Header { return r.h }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}

// reply is the bus message answering a forwarded request.
func (r *recorder) reply() *nats.Msg {
	m := &nats.Msg{Header: nats.Header{}, Data: r.body.Bytes()}
	r.WriteHeader(http.StatusOK)
	m.Header.Set(hdrStatus, strconv.Itoa(r.status))
	for _, k := range replied {
		if v := r.h.Get(k); v != "" {
			m.Header.Set(k, v)
		}
	}
	return m
}

// decodeReply reads a back end's answer: status, the replied headers, body.
func decodeReply(m *nats.Msg) (int, http.Header, []byte, error) {
	status, err := strconv.Atoi(m.Header.Get(hdrStatus))
	if err != nil || status < 100 || status > 599 {
		return 0, nil, nil, errForward
	}
	h := http.Header{}
	for _, k := range replied {
		if v := m.Header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	return status, h, m.Data, nil
}
