package server

import (
	"encoding/json"
	"time"
)

// TestSuiteConfig and TestSuiteHandler reproduce the server that the
// published socket.io-protocol test suite expects (its README's reference
// configuration), so that the suite can be run against this implementation:
// pingInterval 300ms, pingTimeout 200ms, connectTimeout 1s, any origin, a
// "/custom" namespace; every socket gets an "auth" event echoing its CONNECT
// payload, "message" is emitted back as "message-back" and
// "message-with-ack" is acknowledged with its arguments.
func TestSuiteConfig() Config {
	return Config{
		PingInterval:   300 * time.Millisecond,
		PingTimeout:    200 * time.Millisecond,
		ConnectTimeout: time.Second,
		MaxPayload:     1_000_000,
		AllowedOrigins: []string{"*"},
		Namespaces:     []string{"/custom"},
	}
}

// TestSuiteHandler is the Handler of TestSuiteConfig's server.
type TestSuiteHandler struct{}

// Connect implements Handler.
func (TestSuiteHandler) Connect(s *Socket, auth json.RawMessage) error {
	if len(auth) == 0 {
		auth = json.RawMessage("{}")
	}
	_ = s.Emit("auth", auth)
	return nil
}

// Event implements Handler.
func (TestSuiteHandler) Event(s *Socket, name string, m Message, ack func(Message)) {
	switch name {
	case "message":
		args, _ := m.Args()
		if len(args) == 0 {
			return
		}
		args[0] = json.RawMessage(`"message-back"`)
		_ = s.EmitMessage(Message{Data: joinArray(args), Attachments: m.Attachments}, nil)
	case "message-with-ack":
		if ack != nil {
			ack(Message{Data: dropFirst(m.Data), Attachments: m.Attachments})
		}
	}
}

// Disconnect implements Handler.
func (TestSuiteHandler) Disconnect(*Socket, string) {}

// EngineIOEchoConfig is the server that the published engine.io-protocol
// test suite expects at /engine.io/: the reference engine.io server with
// pingInterval 300ms and pingTimeout 200ms that sends every message back.
// It has no Socket.IO layer (its Handler is never called; pass nil).
func EngineIOEchoConfig() Config {
	return Config{
		Path:         "/engine.io/",
		PingInterval: 300 * time.Millisecond,
		PingTimeout:  200 * time.Millisecond,
		MaxPayload:   1_000_000,
		engineEcho:   true,
	}
}
