package server

import (
	"encoding/json"
	"errors"
	"sync"

	"github.com/longlink/longlink/core/weblink/internal/eio"
	"github.com/longlink/longlink/core/weblink/internal/sio"
	"github.com/longlink/longlink/pkg/jsonenc"
)

// Handler gives meaning to Socket.IO traffic. Its methods run on the
// connection's reading goroutine; they may block that one connection only.
type Handler interface {
	// Connect authorises a namespace connection with the CONNECT packet's
	// auth payload (nil when absent). An error is sent as CONNECT_ERROR:
	// a *ConnectError as is, any other error as {"message": err.Error()}.
	Connect(s *Socket, auth json.RawMessage) error
	// Event is an event from the client. ack is nil when the client asked
	// for no acknowledgement; otherwise it must be called at most once.
	Event(s *Socket, name string, m Message, ack func(Message))
	// Disconnect is called once per connected socket when it goes away.
	Disconnect(s *Socket, reason string)
}

// ConnectError is a refusal sent in CONNECT_ERROR as {"message","data"}.
type ConnectError struct {
	Message string
	Data    any
}

func (e *ConnectError) Error() string { return e.Message }

// Message is the JSON array of an event ([name, args...]) or an ack
// ([args...]); in binary messages the attachments stand in it as
// {"_placeholder":true,"num":N}.
type Message struct {
	Data        json.RawMessage
	Attachments [][]byte
}

// Args splits Data into its elements.
func (m Message) Args() ([]json.RawMessage, error) {
	var args []json.RawMessage
	if len(m.Data) == 0 {
		return nil, nil
	}
	err := json.Unmarshal(m.Data, &args)
	return args, err
}

// NewMessage builds a message from values: []byte values at the top level
// become binary attachments, json.RawMessage values are used as they are.
func NewMessage(values ...any) (Message, error) {
	var m Message
	buf := []byte{'['}
	for i, v := range values {
		if i > 0 {
			buf = append(buf, ',')
		}
		switch t := v.(type) {
		case []byte:
			buf = append(buf, sio.Placeholder(len(m.Attachments))...)
			m.Attachments = append(m.Attachments, t)
		case json.RawMessage:
			buf = append(buf, t...)
		default:
			b, err := json.Marshal(v)
			if err != nil {
				return m, err
			}
			buf = append(buf, b...)
		}
	}
	m.Data = append(buf, ']')
	return m, nil
}

// Socket is a client's connection to one namespace.
type Socket struct {
	sess *session
	id   string
	nsp  string

	mu        sync.Mutex
	connected bool
	gone      bool
	early     []outPacket
	acks      map[int64]func(Message)
	nextAck   int64
	value     any
}

type outPacket struct {
	p    sio.Packet
	atts [][]byte
}

// ErrClosed is returned by emits on a socket that is gone.
var ErrClosed = errors.New("socket.io: socket closed")

// ID is the socket id sent to the client in CONNECT.
func (s *Socket) ID() string { return s.id }

// Namespace is the namespace name, "/" for the main one.
func (s *Socket) Namespace() string { return s.nsp }

// SessionID is the Engine.IO session id.
func (s *Socket) SessionID() string { return s.sess.sid }

// ClientIP is the client's address as the server saw it.
func (s *Socket) ClientIP() string { return s.sess.remote }

// Transport is "polling" or "websocket".
func (s *Socket) Transport() string { return s.sess.transportName() }

// SetValue stores the handler's state for this socket.
func (s *Socket) SetValue(v any) { s.mu.Lock(); s.value = v; s.mu.Unlock() }

// Value returns what SetValue stored.
func (s *Socket) Value() any { s.mu.Lock(); defer s.mu.Unlock(); return s.value }

// Emit sends an event: name and arguments as NewMessage builds them.
func (s *Socket) Emit(name string, args ...any) error {
	m, err := NewMessage(append([]any{name}, args...)...)
	if err != nil {
		return err
	}
	return s.EmitMessage(m, nil)
}

// EmitMessage sends an event whose Data is [name, args...]. With ack set,
// the client's acknowledgement is passed to it.
func (s *Socket) EmitMessage(m Message, ack func(Message)) error {
	p := sio.Packet{Type: sio.Event, Namespace: s.nsp, ID: -1, Data: m.Data}
	if len(m.Attachments) > 0 {
		p.Type, p.Attachments = sio.BinaryEvent, len(m.Attachments)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return ErrClosed
	}
	if ack != nil {
		if s.acks == nil {
			s.acks = map[int64]func(Message){}
		}
		p.ID = s.nextAck
		s.acks[p.ID] = ack
		s.nextAck++
	}
	if !s.connected {
		s.early = append(s.early, outPacket{p, m.Attachments})
		return nil
	}
	if !s.sess.sendSIO(p, m.Attachments) {
		return ErrClosed
	}
	return nil
}

// Disconnect leaves the namespace (the client gets a DISCONNECT packet);
// with closeConn the whole connection is closed too.
func (s *Socket) Disconnect(closeConn bool) {
	ss := s.sess
	ss.sioMu.Lock()
	mine := ss.sockets.remove(s)
	ss.sioMu.Unlock()
	if mine {
		ss.sendSIO(sio.Packet{Type: sio.Disconnect, Namespace: s.nsp, ID: -1}, nil)
		s.closed("server namespace disconnect")
	}
	if closeConn {
		ss.close("forced server close", closeGracefully)
	}
}

// CloseTransport closes the whole connection after what is queued, without a
// DISCONNECT packet: the official client sees "transport close" and
// reconnects by itself (used when draining), where after Disconnect it would not.
func (s *Socket) CloseTransport() {
	s.sess.close("forced close", closeGracefully)
}

// closed marks the socket gone and tells the handler once.
func (s *Socket) closed(reason string) {
	s.mu.Lock()
	if s.gone {
		s.mu.Unlock()
		return
	}
	s.gone = true
	s.acks = nil
	s.early = nil
	s.mu.Unlock()
	s.sess.srv.m.sockets.Dec()
	s.sess.srv.h.Disconnect(s, reason)
}

// markConnected sends CONNECT and then whatever was emitted before it.
func (s *Socket) markConnected() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.connected = true
	s.sess.sendSIO(sio.Packet{Type: sio.Connect, Namespace: s.nsp, ID: -1,
		Data: json.RawMessage(`{"sid":"` + s.id + `"}`)}, nil)
	// The reference sends CONNECT, then runs the connection handler, whose
	// emits wait for that write to complete: a client that handles one
	// message per read (the socket.io-protocol test suite) needs them apart.
	s.sess.endWrite()
	for _, o := range s.early {
		s.sess.sendSIO(o.p, o.atts)
	}
	s.early = nil
}

// sendSIO sends one Socket.IO packet and its attachments as Engine.IO messages.
func (ss *session) sendSIO(p sio.Packet, atts [][]byte) bool {
	pkts := make([]eio.Packet, 0, 1+len(atts))
	pkts = append(pkts, eio.Packet{Type: eio.Message, Data: sio.Append(nil, p)})
	for _, a := range atts {
		pkts = append(pkts, eio.Packet{Type: eio.Message, Data: a, Binary: true})
	}
	return ss.send(pkts...)
}

// onMessage feeds an Engine.IO message to the Socket.IO decoder.
func (ss *session) onMessage(p eio.Packet) {
	ss.sioMu.Lock()
	if ss.sioClosed {
		ss.sioMu.Unlock()
		return
	}
	if p.Binary {
		if ss.pending == nil {
			ss.sioMu.Unlock()
			ss.protocolError()
			return
		}
		ss.pendingBufs = append(ss.pendingBufs, append([]byte(nil), p.Data...))
		if len(ss.pendingBufs) < ss.pending.Attachments {
			ss.sioMu.Unlock()
			return
		}
		pkt, bufs := *ss.pending, ss.pendingBufs
		ss.pending, ss.pendingBufs = nil, nil
		ss.sioMu.Unlock()
		ss.dispatch(pkt, bufs)
		return
	}
	if ss.pending != nil {
		ss.sioMu.Unlock()
		ss.protocolError()
		return
	}
	ss.sioMu.Unlock()
	pkt, err := sio.Decode(p.Data)
	if err == nil && pkt.Attachments > 0 {
		err = sio.CheckAttachments(pkt.Data, pkt.Attachments)
	}
	if err != nil {
		ss.protocolError()
		return
	}
	pkt.Data = append(json.RawMessage(nil), pkt.Data...)
	if pkt.Attachments > 0 {
		ss.sioMu.Lock()
		ss.pending = &pkt
		ss.sioMu.Unlock()
		return
	}
	ss.dispatch(pkt, nil)
}

// protocolError closes the connection as the reference does on a packet
// its decoder refuses.
func (ss *session) protocolError() {
	ss.srv.m.parseErrors.WithLabelValues("sio").Inc()
	ss.close("parse error", closeGracefully)
}

func (ss *session) dispatch(pkt sio.Packet, bufs [][]byte) {
	ss.sioMu.Lock()
	sock := ss.sockets.get(pkt.Namespace)
	ss.sioMu.Unlock()
	switch {
	case sock == nil && pkt.Type == sio.Connect:
		ss.connect(pkt)
	case sock != nil && pkt.Type != sio.Connect && pkt.Type != sio.ConnectError:
		sock.onPacket(pkt, bufs)
	default:
		ss.close("forced server close", closeGracefully)
	}
}

func (ss *session) connect(pkt sio.Packet) {
	srv := ss.srv
	if !srv.nsps[pkt.Namespace] {
		ss.sendSIO(sio.Packet{Type: sio.ConnectError, Namespace: pkt.Namespace, ID: -1,
			Data: json.RawMessage(`{"message":"Invalid namespace"}`)}, nil)
		return
	}
	sock := &Socket{sess: ss, id: newID(), nsp: pkt.Namespace}
	if err := srv.h.Connect(sock, pkt.Data); err != nil {
		srv.m.connectErrors.Inc()
		var ce *ConnectError
		if !errors.As(err, &ce) {
			ce = &ConnectError{Message: err.Error()}
		}
		body, mErr := json.Marshal(struct {
			Message string `json:"message"`
			Data    any    `json:"data,omitempty"`
		}{ce.Message, ce.Data})
		if mErr != nil {
			// Data did not encode: the message alone (strconv.Quote is Go
			// syntax, not JSON: \x01, \a).
			body = append(jsonenc.AppendString([]byte(`{"message":`), ce.Message), '}')
		}
		ss.sendSIO(sio.Packet{Type: sio.ConnectError, Namespace: pkt.Namespace, ID: -1, Data: body}, nil)
		return
	}
	srv.m.sockets.Inc()
	ss.sioMu.Lock()
	if ss.sioClosed || ss.sockets.get(pkt.Namespace) != nil {
		ss.sioMu.Unlock()
		sock.closed("transport close")
		return
	}
	ss.sockets = append(ss.sockets, sock)
	if ss.connTimer != nil {
		ss.connTimer.Stop()
		ss.connTimer = nil
	}
	ss.sioMu.Unlock()
	sock.markConnected()
}

func (s *Socket) onPacket(pkt sio.Packet, bufs [][]byte) {
	switch pkt.Type {
	case sio.Event, sio.BinaryEvent:
		m := Message{Data: pkt.Data, Attachments: bufs}
		if m.Data == nil {
			m.Data = json.RawMessage("[]")
		}
		name := pkt.Event
		var ack func(Message)
		if pkt.ID >= 0 {
			id := pkt.ID
			var once sync.Once
			ack = func(a Message) {
				once.Do(func() { s.sendAck(id, a) })
			}
		}
		s.sess.srv.m.events.Inc()
		s.sess.srv.h.Event(s, name, m, ack)
	case sio.Ack, sio.BinaryAck:
		s.mu.Lock()
		f := s.acks[pkt.ID]
		delete(s.acks, pkt.ID)
		s.mu.Unlock()
		if f != nil {
			f(Message{Data: pkt.Data, Attachments: bufs})
		}
	case sio.Disconnect:
		ss := s.sess
		ss.sioMu.Lock()
		mine := ss.sockets.remove(s)
		ss.sioMu.Unlock()
		if mine {
			s.closed("client namespace disconnect")
		}
	}
}

func (s *Socket) sendAck(id int64, a Message) {
	data := a.Data
	if data == nil {
		data = json.RawMessage("[]")
	}
	p := sio.Packet{Type: sio.Ack, Namespace: s.nsp, ID: id, Data: data}
	if len(a.Attachments) > 0 {
		p.Type, p.Attachments = sio.BinaryAck, len(a.Attachments)
	}
	s.mu.Lock()
	gone := s.gone
	s.mu.Unlock()
	if !gone {
		s.sess.sendSIO(p, a.Attachments)
	}
}

// socketList holds a session's namespace sockets.
type socketList []*Socket

func (l socketList) get(nsp string) *Socket {
	for _, s := range l {
		if s.nsp == nsp {
			return s
		}
	}
	return nil
}

func (l *socketList) remove(s *Socket) bool {
	for i, o := range *l {
		if o == s {
			*l = append((*l)[:i], (*l)[i+1:]...)
			return true
		}
	}
	return false
}
