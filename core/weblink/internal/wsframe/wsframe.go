// Package wsframe is the server side of RFC 6455 WebSocket: the opening
// handshake and the frame format, without compression or extensions.
//
// It exists instead of a general WebSocket library because WebLink keeps
// hundreds of thousands of mostly idle connections: the frame parser works on
// whatever bytes the caller already holds, so an idle connection needs no
// read or write buffer of its own (see core/weblink/README.md).
package wsframe

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"strings"
)

// Opcodes (RFC 6455 section 5.2).
const (
	OpContinuation = 0x0
	OpText         = 0x1
	OpBinary       = 0x2
	OpClose        = 0x8
	OpPing         = 0x9
	OpPong         = 0xA
)

// Close status codes used by the server.
const (
	CloseNormal          = 1000
	CloseGoingAway       = 1001
	CloseProtocolError   = 1002
	CloseInvalidPayload  = 1007
	CloseMessageTooBig   = 1009
	CloseInternalError   = 1011
	maxControlPayloadLen = 125
)

// Errors of the frame parser. ErrTooBig maps to close code 1009, the others to 1002.
var (
	ErrProtocol = errors.New("websocket: protocol error")
	ErrTooBig   = errors.New("websocket: frame too big")
)

// Frame is one parsed client frame. Payload aliases the input buffer and is
// already unmasked in place.
type Frame struct {
	Fin     bool
	Opcode  byte
	Payload []byte
}

// Parse parses one client-to-server frame at the start of b. It returns the
// frame and the number of bytes it occupied, or n == 0 when b does not yet
// hold a whole frame; need is then the total size the frame will occupy when
// known (0 if the header itself is incomplete). Frames must be masked, carry
// no RSV bits and, for control frames, be final and at most 125 bytes.
// maxPayload bounds a frame's payload.
func Parse(b []byte, maxPayload int) (f Frame, n int, need int, err error) {
	if len(b) < 2 {
		return f, 0, 0, nil
	}
	b0, b1 := b[0], b[1]
	if b0&0x70 != 0 {
		return f, 0, 0, ErrProtocol
	}
	f.Fin = b0&0x80 != 0
	f.Opcode = b0 & 0x0F
	switch f.Opcode {
	case OpContinuation, OpText, OpBinary:
	case OpClose, OpPing, OpPong:
		if !f.Fin {
			return f, 0, 0, ErrProtocol
		}
	default:
		return f, 0, 0, ErrProtocol
	}
	if b1&0x80 == 0 {
		return f, 0, 0, ErrProtocol // client frames must be masked
	}
	hdr := 2
	plen := uint64(b1 & 0x7F)
	switch plen {
	case 126:
		hdr = 4
		if len(b) < hdr {
			return f, 0, 0, nil
		}
		plen = uint64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		hdr = 10
		if len(b) < hdr {
			return f, 0, 0, nil
		}
		plen = binary.BigEndian.Uint64(b[2:10])
		if plen>>63 != 0 {
			return f, 0, 0, ErrProtocol
		}
	}
	if f.Opcode >= OpClose && plen > maxControlPayloadLen {
		return f, 0, 0, ErrProtocol
	}
	if plen > uint64(maxPayload) {
		return f, 0, 0, ErrTooBig
	}
	total := hdr + 4 + int(plen)
	if len(b) < total {
		return f, 0, total, nil
	}
	mask := b[hdr : hdr+4]
	p := b[hdr+4 : total]
	for i := range p {
		p[i] ^= mask[i&3]
	}
	f.Payload = p
	return f, total, total, nil
}

// AppendFrame appends an unmasked server frame with FIN set.
func AppendFrame(dst []byte, opcode byte, payload []byte) []byte {
	dst = append(dst, 0x80|opcode)
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, byte(n))
	case n <= 0xFFFF:
		dst = append(dst, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, payload...)
}

// AppendClose appends a close frame with a status code.
func AppendClose(dst []byte, code int) []byte {
	return AppendFrame(dst, OpClose, []byte{byte(code >> 8), byte(code)})
}

// FrameSize is the size of a server frame carrying n payload bytes.
func FrameSize(n int) int {
	switch {
	case n < 126:
		return 2 + n
	case n <= 0xFFFF:
		return 4 + n
	}
	return 10 + n
}

const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// IsUpgrade reports whether r asks for a WebSocket upgrade.
func IsUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

// CheckHandshake validates a client opening handshake and returns the value of
// Sec-WebSocket-Accept.
func CheckHandshake(r *http.Request) (string, error) {
	if r.Method != http.MethodGet {
		return "", errors.New("websocket: handshake method is not GET")
	}
	if !IsUpgrade(r) {
		return "", errors.New("websocket: missing upgrade headers")
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		return "", errors.New("websocket: unsupported version")
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if raw, err := base64.StdEncoding.DecodeString(key); err != nil || len(raw) != 16 {
		return "", errors.New("websocket: bad Sec-WebSocket-Key")
	}
	return AcceptKey(key), nil
}

// AcceptKey computes Sec-WebSocket-Accept for a Sec-WebSocket-Key.
func AcceptKey(key string) string {
	h := sha1.New()
	h.Write([]byte(key))
	h.Write([]byte(acceptGUID))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// AppendResponse appends the 101 response of an accepted handshake.
func AppendResponse(dst []byte, accept string) []byte {
	dst = append(dst, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	dst = append(dst, accept...)
	return append(dst, "\r\n\r\n"...)
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
