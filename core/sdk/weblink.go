package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/coder/websocket"

	"github.com/longlink/longlink/core/imapi"
)

// WebLinkOption configures WebLinkDialer.
type WebLinkOption func(*webLinkOptions)

type webLinkOptions struct {
	path       string
	maxMessage int64
	client     *http.Client
}

// WithWebLinkPath sets the Engine.IO path (default "/socket.io/").
func WithWebLinkPath(p string) WebLinkOption { return func(o *webLinkOptions) { o.path = p } }

// WithWebLinkHTTPClient sets the HTTP client of the WebSocket handshake
// (default http.DefaultClient): a proxy, TLS roots, a source address.
func WithWebLinkHTTPClient(c *http.Client) WebLinkOption {
	return func(o *webLinkOptions) { o.client = c }
}

// WithWebLinkMaxMessage sets the largest WebSocket message accepted from the
// server (default 1 MiB); a larger one ends the connection.
func WithWebLinkMaxMessage(n int64) WebLinkOption {
	return func(o *webLinkOptions) { o.maxMessage = n }
}

// WebLinkDialer returns a Dialer for WebLink: Socket.IO v5 over an Engine.IO
// v4 WebSocket session. addr is the server's base URL (http://host:port or
// https://host:port; ws/wss are accepted too). Login is the Socket.IO
// CONNECT with the LoginReq as auth, requests are events with acks, pushes
// are events named by op.
func WebLinkDialer(opts ...WebLinkOption) Dialer {
	o := webLinkOptions{path: "/socket.io/", maxMessage: 1 << 20}
	for _, f := range opts {
		f(&o)
	}
	return func(ctx context.Context, addr string) (Transport, error) {
		u, err := url.Parse(addr)
		if err != nil {
			return nil, fmt.Errorf("weblink %s: %w", addr, err)
		}
		switch u.Scheme {
		case "http", "ws":
			u.Scheme = "ws"
		case "https", "wss":
			u.Scheme = "wss"
		default:
			return nil, fmt.Errorf("weblink %s: want an http(s) or ws(s) URL", addr)
		}
		u.Path = o.path
		u.RawQuery = "EIO=4&transport=websocket"
		c, _, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{HTTPClient: o.client})
		if err != nil {
			return nil, fmt.Errorf("weblink %s: %w", addr, err)
		}
		c.SetReadLimit(o.maxMessage)
		// the Engine.IO open packet: 0{"sid",…}
		_, msg, err := c.Read(ctx)
		if err != nil {
			_ = c.CloseNow()
			return nil, fmt.Errorf("weblink %s: open: %w", addr, err)
		}
		if len(msg) == 0 || msg[0] != '0' {
			_ = c.CloseNow()
			return nil, fmt.Errorf("weblink %s: open: unexpected packet %q", addr, truncate(msg))
		}
		return &webLinkTransport{c: c, acks: map[uint64]opSeq{}}, nil
	}
}

type opSeq struct {
	op  imapi.Op
	seq uint32
}

// webLinkTransport maps SDK frames onto Socket.IO packets. Send may run
// concurrently (coder/websocket serialises writes); Recv runs in one
// goroutine and answers Engine.IO pings.
type webLinkTransport struct {
	c *websocket.Conn

	mu       sync.Mutex
	nextAck  uint64
	acks     map[uint64]opSeq
	loginSeq uint32
	login    bool // a login is waiting for its answer
}

func (t *webLinkTransport) write(p []byte) error {
	return t.c.Write(context.Background(), websocket.MessageText, p)
}

func (t *webLinkTransport) Send(op imapi.Op, seq uint32, body []byte) error {
	if len(body) == 0 {
		body = []byte("{}")
	}
	if op == imapi.OpLogin {
		t.mu.Lock()
		t.loginSeq, t.login = seq, true
		t.mu.Unlock()
		// Engine.IO message (4) carrying Socket.IO CONNECT (0) with auth.
		return t.write(append([]byte("40"), body...))
	}
	name, err := json.Marshal(op.Name())
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.nextAck++
	id := t.nextAck
	t.acks[id] = opSeq{op, seq}
	t.mu.Unlock()
	p := make([]byte, 0, len(body)+len(name)+24)
	p = append(p, "42"...)
	p = strconv.AppendUint(p, id, 10)
	p = append(p, '[')
	p = append(p, name...)
	p = append(p, ',')
	p = append(p, body...)
	p = append(p, ']')
	if err := t.write(p); err != nil {
		t.mu.Lock()
		delete(t.acks, id)
		t.mu.Unlock()
		return err
	}
	return nil
}

func (t *webLinkTransport) Recv() (Incoming, error) {
	for {
		typ, msg, err := t.c.Read(context.Background())
		if err != nil {
			return Incoming{}, err
		}
		if typ != websocket.MessageText || len(msg) == 0 {
			return Incoming{}, errors.New("weblink: unexpected binary or empty message")
		}
		switch msg[0] {
		case '2': // ping
			if err := t.write([]byte("3")); err != nil {
				return Incoming{}, err
			}
			continue
		case '6': // noop
			continue
		case '1':
			return Incoming{}, errors.New("weblink: closed by server")
		case '4':
		default:
			return Incoming{}, fmt.Errorf("weblink: unexpected Engine.IO packet %q", truncate(msg))
		}
		in, ok, err := t.socketIO(msg[1:])
		if err != nil {
			return Incoming{}, err
		}
		if ok {
			return in, nil
		}
	}
}

// socketIO decodes one Socket.IO packet of the main namespace; ok is false
// for packets that produce nothing for the SDK.
func (t *webLinkTransport) socketIO(p []byte) (Incoming, bool, error) {
	if len(p) == 0 {
		return Incoming{}, false, errors.New("weblink: empty Socket.IO packet")
	}
	typ, rest := p[0], p[1:]
	if len(rest) > 0 && rest[0] == '/' {
		return Incoming{}, false, fmt.Errorf("weblink: packet for another namespace %q", truncate(p))
	}
	switch typ {
	case '0': // CONNECT ack; the login event follows
		return Incoming{}, false, nil
	case '1':
		return Incoming{}, false, errors.New("weblink: disconnected by server")
	case '4': // CONNECT_ERROR {"message","data":{"code","message"}}
		var ce struct {
			Message string       `json:"message"`
			Data    *imapi.Error `json:"data"`
		}
		if err := json.Unmarshal(rest, &ce); err != nil {
			return Incoming{}, false, fmt.Errorf("weblink: bad CONNECT_ERROR: %w", err)
		}
		e := imapi.Error{Code: imapi.ErrBadRequest, Message: ce.Message}
		if ce.Data != nil && ce.Data.Code != imapi.OK {
			e = *ce.Data
		}
		body, _ := json.Marshal(e)
		t.mu.Lock()
		seq, waiting := t.loginSeq, t.login
		t.login = false
		t.mu.Unlock()
		if !waiting {
			return Incoming{}, false, fmt.Errorf("weblink: connect refused: %s", e.Message)
		}
		return Incoming{Op: imapi.OpLogin, Seq: seq, Code: e.Code, Body: body}, true, nil
	case '2': // EVENT [id]["name", body]
		_, arr := splitAckID(rest)
		var args []json.RawMessage
		if err := json.Unmarshal(arr, &args); err != nil || len(args) == 0 {
			return Incoming{}, false, fmt.Errorf("weblink: bad event %q", truncate(p))
		}
		var name string
		if err := json.Unmarshal(args[0], &name); err != nil {
			return Incoming{}, false, fmt.Errorf("weblink: bad event name %q", truncate(p))
		}
		var body []byte
		if len(args) > 1 {
			body = args[1]
		}
		if name == "login" {
			t.mu.Lock()
			seq, waiting := t.loginSeq, t.login
			t.login = false
			t.mu.Unlock()
			if waiting {
				return Incoming{Op: imapi.OpLogin, Seq: seq, Body: body}, true, nil
			}
			return Incoming{}, false, nil
		}
		op, ok := imapi.OpByName(name)
		if !ok {
			return Incoming{}, false, nil // an event this SDK does not know
		}
		return Incoming{Op: op, Push: true, Body: body}, true, nil
	case '3': // ACK id[{"code","message","body"}]
		id, arr := splitAckID(rest)
		if id < 0 {
			return Incoming{}, false, fmt.Errorf("weblink: ack without id %q", truncate(p))
		}
		t.mu.Lock()
		pend, ok := t.acks[uint64(id)]
		delete(t.acks, uint64(id))
		t.mu.Unlock()
		if !ok {
			return Incoming{}, false, nil
		}
		var args []struct {
			Code    imapi.Code      `json:"code"`
			Message string          `json:"message"`
			Body    json.RawMessage `json:"body"`
		}
		if err := json.Unmarshal(arr, &args); err != nil || len(args) != 1 {
			return Incoming{}, false, fmt.Errorf("weblink: bad ack %q", truncate(p))
		}
		a := args[0]
		in := Incoming{Op: pend.op, Seq: pend.seq, Code: a.Code, Body: a.Body}
		if a.Code != imapi.OK {
			in.Body, _ = json.Marshal(imapi.Error{Code: a.Code, Message: a.Message})
		}
		return in, true, nil
	default:
		return Incoming{}, false, fmt.Errorf("weblink: unexpected Socket.IO packet %q", truncate(p))
	}
}

// splitAckID splits a leading decimal ack id (-1 when absent) from p.
func splitAckID(p []byte) (int64, []byte) {
	i := 0
	for i < len(p) && i < 16 && p[i] >= '0' && p[i] <= '9' {
		i++
	}
	if i == 0 {
		return -1, p
	}
	id, err := strconv.ParseInt(string(p[:i]), 10, 64)
	if err != nil {
		return -1, p
	}
	return id, p[i:]
}

func truncate(p []byte) []byte {
	p = bytes.TrimSpace(p)
	if len(p) > 64 {
		return p[:64]
	}
	return p
}

func (t *webLinkTransport) Close() error { return t.c.CloseNow() }
