package link

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/flynn/noise"
)

var (
	magic       = [2]byte{'L', 'K'}
	prologueTag = []byte("longlink-link-v1")
)

// noiseMsgLen is the size of both NK handshake messages with empty payloads
// (a 32-byte ephemeral key and a 16-byte tag). Larger messages are allowed up
// to maxNoiseMsg so that a later version can carry a payload.
const (
	noiseMsgLen = 48
	maxNoiseMsg = 512
	maxKeyIDLen = 64
)

// bindContext makes ctx's deadline and cancellation apply to blocking I/O on
// nc until the returned function is called.
func bindContext(ctx context.Context, nc net.Conn) func() {
	if d, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	return func() {
		stop()
		_ = nc.SetDeadline(time.Time{})
	}
}

func prologue(hello []byte) []byte {
	p := make([]byte, 0, len(prologueTag)+len(hello))
	p = append(p, prologueTag...)
	return append(p, hello...)
}

// Client runs the client side of the handshake on nc with the server key
// serverPub named keyID, and returns the sealed connection. ctx bounds the
// handshake. On failure nc is not closed.
func Client(ctx context.Context, nc net.Conn, keyID string, serverPub []byte, lim Limits) (*Conn, error) {
	if err := ValidKeyID(keyID); err != nil {
		return nil, err
	}
	if len(serverPub) != 32 {
		return nil, fmt.Errorf("link: server public key has %d bytes, want 32", len(serverPub))
	}
	defer bindContext(ctx, nc)()

	hello := make([]byte, 0, 4+len(keyID)+2+noiseMsgLen)
	hello = append(hello, magic[0], magic[1], Version, byte(len(keyID)))
	hello = append(hello, keyID...)
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite: handshakeSuite(nil),
		Random:      rand.Reader,
		Pattern:     noise.HandshakeNK,
		Initiator:   true,
		Prologue:    prologue(hello),
		PeerStatic:  serverPub,
	})
	if err != nil {
		return nil, fmt.Errorf("link: client handshake: %w", err)
	}
	msg1, _, _, err := hs.WriteMessage(nil, nil)
	if err != nil {
		return nil, fmt.Errorf("link: client handshake: %w", err)
	}
	hello = binary.BigEndian.AppendUint16(hello, uint16(len(msg1)))
	hello = append(hello, msg1...)
	if _, err := nc.Write(hello); err != nil {
		return nil, fmt.Errorf("link: client hello: %w", err)
	}

	var st [3]byte
	if _, err := io.ReadFull(nc, st[:1]); err != nil {
		return nil, fmt.Errorf("link: server hello: %w", err)
	}
	if Status(st[0]) != StatusOK {
		return nil, &HandshakeError{Status: Status(st[0]), KeyID: keyID}
	}
	if _, err := io.ReadFull(nc, st[1:3]); err != nil {
		return nil, fmt.Errorf("link: server hello: %w", err)
	}
	m := int(binary.BigEndian.Uint16(st[1:3]))
	if m < noiseMsgLen || m > maxNoiseMsg {
		return nil, fmt.Errorf("%w: server message of %d bytes", ErrBadHello, m)
	}
	msg2 := make([]byte, m)
	if _, err := io.ReadFull(nc, msg2); err != nil {
		return nil, fmt.Errorf("link: server hello: %w", err)
	}
	_, send, recv, err := hs.ReadMessage(nil, msg2)
	if err != nil {
		return nil, fmt.Errorf("%w: server message: %v", ErrBadHello, err)
	}
	if send == nil || recv == nil {
		return nil, fmt.Errorf("%w: handshake did not complete", ErrBadHello)
	}
	c, err := newConn(nc, keyID, send, recv, lim)
	if err != nil {
		return nil, fmt.Errorf("link: client handshake: %w", err)
	}
	return c, nil
}

// Server runs the server side of the handshake on nc with the keys of ring
// and returns the sealed connection. ctx bounds the handshake. A hello
// naming an unknown key or version is answered with its status; on any
// failure nc is not closed.
func Server(ctx context.Context, nc net.Conn, ring *KeyRing, lim Limits) (*Conn, error) {
	h, err := ReadHello(ctx, nc)
	if err != nil {
		return nil, err
	}
	return h.Answer(ctx, nc, ring, lim)
}

// Hello is a client's hello, read but not answered yet. Server is
// ReadHello then Answer; a server that admits handshakes a few at a time
// (their X25519 operations are most of a login's CPU) waits for the hello
// outside its admission, since that wait is the client's and costs no CPU.
type Hello struct {
	head  [4]byte
	keyID string
	msg1  []byte
}

// KeyID is the server key the client named.
func (h *Hello) KeyID() string { return h.keyID }

// ReadHello reads the client's hello from nc within ctx. A hello of an
// unsupported version is answered with its status; on any failure nc is
// not closed.
func ReadHello(ctx context.Context, nc net.Conn) (*Hello, error) {
	defer bindContext(ctx, nc)()

	h := &Hello{}
	if _, err := io.ReadFull(nc, h.head[:]); err != nil {
		return nil, fmt.Errorf("link: client hello: %w", err)
	}
	if h.head[0] != magic[0] || h.head[1] != magic[1] {
		return nil, fmt.Errorf("%w: bad magic %x", ErrBadHello, h.head[:2])
	}
	if h.head[2] != Version {
		_, _ = nc.Write([]byte{byte(StatusUnsupportedVersion)})
		return nil, fmt.Errorf("%w: unsupported version %d", ErrBadHello, h.head[2])
	}
	n := int(h.head[3])
	if n == 0 || n > maxKeyIDLen {
		return nil, fmt.Errorf("%w: key id length %d", ErrBadHello, n)
	}
	rest := make([]byte, n+2)
	if _, err := io.ReadFull(nc, rest); err != nil {
		return nil, fmt.Errorf("link: client hello: %w", err)
	}
	h.keyID = string(rest[:n])
	m := int(binary.BigEndian.Uint16(rest[n:]))
	if m < noiseMsgLen || m > maxNoiseMsg {
		return nil, fmt.Errorf("%w: client message of %d bytes", ErrBadHello, m)
	}
	h.msg1 = make([]byte, m)
	if _, err := io.ReadFull(nc, h.msg1); err != nil {
		return nil, fmt.Errorf("link: client hello: %w", err)
	}
	return h, nil
}

// Answer completes the handshake of a hello read from nc with the keys of
// ring within ctx and returns the sealed connection. A hello naming an
// unknown key is answered with its status; on any failure nc is not closed.
func (h *Hello) Answer(ctx context.Context, nc net.Conn, ring *KeyRing, lim Limits) (*Conn, error) {
	defer bindContext(ctx, nc)()

	key, ok := ring.get(h.keyID)
	if !ok {
		_, _ = nc.Write([]byte{byte(StatusUnknownKey)})
		return nil, &HandshakeError{Status: StatusUnknownKey, KeyID: h.keyID}
	}
	hello := make([]byte, 0, 4+len(h.keyID))
	hello = append(hello, h.head[:]...)
	hello = append(hello, h.keyID...)
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:   handshakeSuite(key.parsed),
		Random:        rand.Reader,
		Pattern:       noise.HandshakeNK,
		Initiator:     false,
		Prologue:      prologue(hello),
		StaticKeypair: key.dh,
	})
	if err != nil {
		return nil, fmt.Errorf("link: server handshake: %w", err)
	}
	if _, _, _, err := hs.ReadMessage(nil, h.msg1); err != nil {
		return nil, fmt.Errorf("%w: client message: %v", ErrBadHello, err)
	}
	out := make([]byte, 3, 3+noiseMsgLen)
	out, recv, send, err := hs.WriteMessage(out, nil)
	if err != nil {
		return nil, fmt.Errorf("link: server handshake: %w", err)
	}
	if recv == nil || send == nil {
		return nil, fmt.Errorf("%w: handshake did not complete", ErrBadHello)
	}
	out[0] = byte(StatusOK)
	binary.BigEndian.PutUint16(out[1:3], uint16(len(out)-3))
	if _, err := nc.Write(out); err != nil {
		return nil, fmt.Errorf("link: server hello: %w", err)
	}
	c, err := newConn(nc, h.keyID, send, recv, lim)
	if err != nil {
		return nil, fmt.Errorf("link: server handshake: %w", err)
	}
	return c, nil
}
