// Package eio is the Engine.IO protocol v4 wire format: packets and the
// HTTP long-polling payload (packets separated by the record separator 0x1e,
// binary packets base64-encoded behind a 'b'). It has no sockets; the server
// lives in core/weblink/internal/server. See SPEC.md beside this file.
package eio

import (
	"encoding/base64"
	"errors"
)

// Packet types.
const (
	Open    byte = 0
	Close   byte = 1
	Ping    byte = 2
	Pong    byte = 3
	Message byte = 4
	Upgrade byte = 5
	Noop    byte = 6
)

// Separator ends each packet but the last in a polling payload.
const Separator = 0x1e

// ErrParse is returned for bytes that are not an Engine.IO packet; the
// reference server closes the session with reason "parse error".
var ErrParse = errors.New("eio: parse error")

// Packet is one Engine.IO packet. Binary marks a message whose Data is raw
// bytes (a WebSocket binary frame, or base64 behind 'b' in polling).
type Packet struct {
	Type   byte
	Data   []byte
	Binary bool
}

// DecodeText decodes a text packet: a type digit and its data, or 'b' and
// base64. Data aliases s except for base64.
func DecodeText(s []byte) (Packet, error) {
	if len(s) == 0 {
		return Packet{}, ErrParse
	}
	if s[0] == 'b' {
		data, err := decodeBase64(s[1:])
		if err != nil {
			return Packet{}, ErrParse
		}
		return Packet{Type: Message, Data: data, Binary: true}, nil
	}
	t := s[0] - '0'
	if s[0] < '0' || t > Noop {
		return Packet{}, ErrParse
	}
	return Packet{Type: t, Data: s[1:]}, nil
}

func decodeBase64(s []byte) ([]byte, error) {
	dst := make([]byte, base64.RawStdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(dst, s)
	if err != nil {
		// Buffer.from(s, "base64") in the reference accepts unpadded input.
		n, err = base64.RawStdEncoding.Decode(dst, s)
		if err != nil {
			return nil, err
		}
	}
	return dst[:n], nil
}

// DecodePayload splits a polling request body into packets. Like the
// reference parser it stops at the first packet that does not decode and
// returns the packets before it with ErrParse.
func DecodePayload(body []byte) ([]Packet, error) {
	var out []Packet
	for {
		i := indexSep(body)
		part := body
		if i >= 0 {
			part = body[:i]
		}
		p, err := DecodeText(part)
		if err != nil {
			return out, err
		}
		out = append(out, p)
		if i < 0 {
			return out, nil
		}
		body = body[i+1:]
	}
}

func indexSep(b []byte) int {
	for i, c := range b {
		if c == Separator {
			return i
		}
	}
	return -1
}

// AppendText appends the text encoding of p as sent in a WebSocket text
// frame; binary messages are not text and go in binary frames instead.
func AppendText(dst []byte, p Packet) []byte {
	dst = append(dst, '0'+p.Type)
	return append(dst, p.Data...)
}

// AppendPayload appends p to a polling payload, with the separator when dst
// already holds a packet.
func AppendPayload(dst []byte, p Packet) []byte {
	if len(dst) > 0 {
		dst = append(dst, Separator)
	}
	if p.Binary {
		dst = append(dst, 'b')
		return base64.StdEncoding.AppendEncode(dst, p.Data)
	}
	return AppendText(dst, p)
}
