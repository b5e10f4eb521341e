// Package link implements the Link wire protocol: a Noise NK handshake that
// authenticates the server by a static key named by key id, followed by
// length-prefixed frames sealed with ChaCha20-Poly1305 and counter nonces.
// LINK.md is the specification.
//
// The package has no sockets of its own: Client and Server wrap any net.Conn.
package link

import (
	"errors"
	"fmt"

	"github.com/longlink/longlink/core/imapi"
)

// Version is the protocol version carried in the hello and in every frame.
const Version = 1

// Frame flags.
const (
	FlagCompressed uint8 = 1 << 0
	FlagResponse   uint8 = 1 << 1
	FlagPush       uint8 = 1 << 2

	knownFlags = FlagCompressed | FlagResponse | FlagPush
)

// HeaderSize is the size of the plaintext frame header.
const HeaderSize = 10

// tagSize is the AEAD tag size of ChaCha20-Poly1305.
const tagSize = 16

// Defaults of Limits.
const (
	DefaultMaxFrameSize      = 1 << 20
	DefaultCompressThreshold = 1024
)

// Limits bound what a Conn accepts and how it writes.
type Limits struct {
	// MaxFrameSize is the largest plaintext frame (header and body) read or
	// written, and the largest body a compressed body may inflate to.
	// 0 means DefaultMaxFrameSize.
	MaxFrameSize int
	// CompressThreshold: bodies longer than this are compressed when that
	// makes them smaller. 0 means DefaultCompressThreshold; negative disables.
	CompressThreshold int
	// KeepCompressed makes ReadFrame return a compressed body as it came,
	// with FlagCompressed set in Flags, for a reader that inflates it
	// itself (Inflate) or not at all: one that gets the same compressed
	// body on many connections (a chatroom batch) decodes it once.
	KeepCompressed bool
}

func (l Limits) withDefaults() Limits {
	if l.MaxFrameSize <= 0 {
		l.MaxFrameSize = DefaultMaxFrameSize
	}
	if l.CompressThreshold == 0 {
		l.CompressThreshold = DefaultCompressThreshold
	}
	return l
}

// Frame is one decoded frame.
type Frame struct {
	Op imapi.Op
	// Flags: FlagResponse or FlagPush. The Conn compresses large bodies
	// itself; a writer may instead set FlagCompressed with a body made by
	// Deflate, which is then sent as is. Read frames carry it only with
	// Limits.KeepCompressed, their body then as it came.
	Flags uint8
	Seq   uint32
	Code  imapi.Code
	Body  []byte
}

// IsResponse reports whether the frame answers a request.
func (f *Frame) IsResponse() bool { return f.Flags&FlagResponse != 0 }

// IsPush reports whether the frame is a server push.
func (f *Frame) IsPush() bool { return f.Flags&FlagPush != 0 }

// Errors returned by Conn. They are wrapped with context; use errors.Is.
var (
	// ErrFrameTooLarge: a frame (or an inflated body) exceeds MaxFrameSize.
	ErrFrameTooLarge = errors.New("link: frame too large")
	// ErrBadFrame: a frame that decrypted but is malformed.
	ErrBadFrame = errors.New("link: malformed frame")
	// ErrDecrypt: a frame failed authentication (replayed, reordered,
	// altered or forged).
	ErrDecrypt = errors.New("link: frame authentication failed")
	// ErrBadHello: the peer did not speak the Link handshake.
	ErrBadHello = errors.New("link: bad handshake")
	// ErrClosed: the Conn was closed.
	ErrClosed = errors.New("link: connection closed")
)

// Status is the server's answer to a client hello.
type Status uint8

// Hello statuses.
const (
	StatusOK                 Status = 0
	StatusUnknownKey         Status = 1
	StatusUnsupportedVersion Status = 2
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusUnknownKey:
		return "unknown key id"
	case StatusUnsupportedVersion:
		return "unsupported version"
	}
	return fmt.Sprintf("status %d", uint8(s))
}

// HandshakeError is returned by Client when the server refused the hello.
type HandshakeError struct {
	Status Status
	KeyID  string
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("link: server refused handshake for key %q: %s", e.KeyID, e.Status)
}
