package weblink

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/longlink/longlink/core/gateway"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/weblink/internal/server"
)

// Sessions is the session hub WebLink plugs its sockets into: the gateway's
// transport-agnostic session API (*gateway.Gateway).
type Sessions interface {
	Login(ctx context.Context, t gateway.Transport, clientIP string, body []byte) (*gateway.Session, []byte, error)
}

// imHandler binds Socket.IO sockets to gateway sessions:
//
//   - CONNECT on "/" carries the imapi.LoginReq as its auth payload. A
//     refused login answers CONNECT_ERROR {"message", "data":{"code","message"}}
//     with the imapi code (and "retry_after_ms" when the server is busy and
//     says when to come back); a good one is followed by a "login" event carrying
//     the imapi.LoginResp.
//   - Every request is an event named imapi.Op.Name() whose one argument is
//     the request body; the ack carries {"code","message","body"}.
//   - Pushes are events named after their op, with the body as argument.
//   - A kick is a "kick" event (imapi.Kick), then the connection closes.
type imHandler struct {
	gw           Sessions
	loginTimeout time.Duration
	m            *metrics
	ctx          context.Context // cancelled at shutdown
}

// sockState is a socket's link to its gateway session.
type sockState struct {
	sock *server.Socket
	sess *gateway.Session

	mu    sync.Mutex
	ready bool // the login answer is out: pushes may go straight through
	held  []held
}

type held struct {
	op   imapi.Op
	body []byte
}

// Push implements gateway.Transport. It never blocks: the socket queues.
func (st *sockState) Push(op imapi.Op, body []byte) bool {
	st.mu.Lock()
	if !st.ready {
		st.held = append(st.held, held{op, append([]byte(nil), body...)})
		st.mu.Unlock()
		return true
	}
	st.mu.Unlock()
	return st.emit(op, body) == nil
}

func (st *sockState) emit(op imapi.Op, body []byte) error {
	if len(body) == 0 || !json.Valid(body) {
		body = []byte("{}")
	}
	m, err := server.NewMessage(op.Name(), json.RawMessage(body))
	if err != nil {
		return err
	}
	return st.sock.EmitMessage(m, nil)
}

// Close implements gateway.Transport: the kick goes out, then the connection
// closes. A client kicked by another device gets a DISCONNECT, after which
// socket.io-client does not reconnect; for other reasons (draining, slow
// consumer) only the transport closes, so that it reconnects — elsewhere,
// when draining. The close runs on its own goroutine because it calls back
// into the gateway (Session.Close).
func (st *sockState) Close(k imapi.Kick) {
	body, _ := json.Marshal(k)
	_ = st.emit(imapi.OpKick, body)
	if k.Code == imapi.ErrKicked {
		go st.sock.Disconnect(true)
		return
	}
	go st.sock.CloseTransport()
}

func (h *imHandler) Connect(s *server.Socket, auth json.RawMessage) error {
	if len(auth) == 0 {
		h.m.logins.WithLabelValues(imapi.ErrUnauthorized.String()).Inc()
		return connectError(imapi.Errorf(imapi.ErrUnauthorized, "the CONNECT auth payload must carry the login request"))
	}
	st := &sockState{sock: s}
	ctx, cancel := context.WithTimeout(h.ctx, h.loginTimeout)
	defer cancel()
	sess, resp, err := h.gw.Login(ctx, st, s.ClientIP(), auth)
	if err != nil {
		var ie *imapi.Error
		if !errors.As(err, &ie) {
			ie = imapi.Errorf(imapi.ErrInternal, "%v", err)
		}
		h.m.logins.WithLabelValues(ie.Code.String()).Inc()
		return connectError(ie)
	}
	h.m.logins.WithLabelValues("ok").Inc()
	st.sess = sess
	s.SetValue(st)
	// The login answer goes first; pushes that came during the login follow.
	_ = st.emit(imapi.OpLogin, resp)
	st.mu.Lock()
	for _, p := range st.held {
		_ = st.emit(p.op, p.body)
	}
	st.held = nil
	st.ready = true
	st.mu.Unlock()
	return nil
}

func connectError(e *imapi.Error) error {
	msg := e.Message
	if msg == "" {
		msg = e.Code.String()
	}
	return &server.ConnectError{Message: msg, Data: imapi.Error{Code: e.Code, Message: msg, RetryAfterMs: e.RetryAfterMs}}
}

// ackBody is what a request's ack carries.
type ackBody struct {
	Code    imapi.Code      `json:"code"`
	Message string          `json:"message,omitempty"`
	Body    json.RawMessage `json:"body,omitempty"`
	// RetryAfterMs is a retryable refusal's hint (503 "busy"), as Link
	// clients find it in the error body: the Web SDK paces its resends by it.
	RetryAfterMs int64 `json:"retry_after_ms,omitempty"`
}

// ackFor turns a service reply into the ack: the body on success, the
// code's message (and retry hint) on a refusal.
func ackFor(r gateway.Reply) ackBody {
	a := ackBody{Code: r.Code}
	if r.Code == imapi.OK {
		if len(r.Body) > 0 {
			a.Body = r.Body
		}
		return a
	}
	var e imapi.Error
	if json.Unmarshal(r.Body, &e) == nil {
		a.Message, a.RetryAfterMs = e.Message, e.RetryAfterMs
	}
	if a.Message == "" {
		a.Message = r.Code.String()
	}
	return a
}

func ackMessage(a ackBody) server.Message {
	m, err := server.NewMessage(a)
	if err != nil {
		m, _ = server.NewMessage(ackBody{Code: imapi.ErrInternal, Message: err.Error()})
	}
	return m
}

func (h *imHandler) Event(s *server.Socket, name string, m server.Message, ack func(server.Message)) {
	st, _ := s.Value().(*sockState)
	if st == nil {
		return
	}
	reply := func(a ackBody) {
		if ack != nil {
			ack(ackMessage(a))
		}
	}
	op, ok := imapi.OpByName(name)
	if !ok {
		h.m.requests.WithLabelValues("unknown").Inc()
		reply(ackBody{Code: imapi.ErrUnknownOp, Message: "unknown operation " + name})
		return
	}
	args, err := m.Args()
	if err != nil || len(m.Attachments) > 0 || len(args) > 2 {
		reply(ackBody{Code: imapi.ErrBadRequest, Message: "want one JSON argument: the request body"})
		return
	}
	var body []byte
	if len(args) == 2 && string(args[1]) != "null" {
		body = args[1]
	}
	h.m.requests.WithLabelValues(op.Name()).Inc()
	st.sess.Go(op, body, func(r gateway.Reply) {
		reply(ackFor(r))
		if op == imapi.OpLogout && r.Code == imapi.OK {
			go s.Disconnect(true)
		}
	})
}

func (h *imHandler) Disconnect(s *server.Socket, reason string) {
	if st, _ := s.Value().(*sockState); st != nil && st.sess != nil {
		st.sess.Close()
	}
}
