package server

import (
	"encoding/json"

	"sync"
)

// EchoHandler is a Handler for tests and benchmarks: "echo" events are
// acknowledged with their arguments (or emitted back as "echo" without an
// ack), "broadcast" reaches every socket of the namespace, and a non-empty
// Token refuses CONNECTs whose auth lacks {"token": Token}.
type EchoHandler struct {
	Token string

	mu      sync.Mutex
	sockets map[*Socket]bool
}

// Connect implements Handler.
func (h *EchoHandler) Connect(s *Socket, auth json.RawMessage) error {
	if h.Token != "" {
		var a struct {
			Token string `json:"token"`
		}
		if len(auth) == 0 || json.Unmarshal(auth, &a) != nil || a.Token != h.Token {
			return &ConnectError{Message: "unauthorized", Data: map[string]any{"code": 401}}
		}
	}
	h.mu.Lock()
	if h.sockets == nil {
		h.sockets = map[*Socket]bool{}
	}
	h.sockets[s] = true
	h.mu.Unlock()
	return nil
}

// Event implements Handler.
func (h *EchoHandler) Event(s *Socket, name string, m Message, ack func(Message)) {
	switch name {
	case "echo":
		if ack != nil {
			ack(Message{Data: dropFirst(m.Data), Attachments: m.Attachments})
			return
		}
		_ = s.EmitMessage(m, nil)
	case "broadcast":
		h.mu.Lock()
		all := make([]*Socket, 0, len(h.sockets))
		for o := range h.sockets {
			if o.Namespace() == s.Namespace() {
				all = append(all, o)
			}
		}
		h.mu.Unlock()
		for _, o := range all {
			_ = o.EmitMessage(m, nil)
		}
	case "disconnect-me":
		s.Disconnect(false)
	case "close-me":
		s.Disconnect(true)
	case "drop-me":
		// Close the Engine.IO session without a Socket.IO DISCONNECT, as
		// the reference's socket.conn.close() does: the close packet reaches
		// the client (on polling, with its next poll), which sees a
		// transport close and reconnects by itself.
		go s.sess.close("forced close", closeGracefully)
	}
}

// Disconnect implements Handler.
func (h *EchoHandler) Disconnect(s *Socket, reason string) {
	h.mu.Lock()
	delete(h.sockets, s)
	h.mu.Unlock()
}

// dropFirst removes the first element of a JSON array (an event's name),
// keeping the other elements byte for byte.
func dropFirst(data json.RawMessage) json.RawMessage {
	var args []json.RawMessage
	if json.Unmarshal(data, &args) != nil || len(args) == 0 {
		return json.RawMessage("[]")
	}
	return joinArray(args[1:])
}

// joinArray builds a JSON array from raw elements.
func joinArray(elems []json.RawMessage) json.RawMessage {
	b := []byte{'['}
	for i, e := range elems {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, e...)
	}
	return append(b, ']')
}
