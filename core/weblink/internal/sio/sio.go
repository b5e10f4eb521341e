// Package sio is the Socket.IO protocol v5 wire format (what socket.io-client
// v4 speaks) carried in Engine.IO messages: packet encoding, decoding with
// the reference parser's validity rules, and binary attachments. It has no
// sockets. See SPEC.md beside this file.
package sio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Packet types.
const (
	Connect      byte = 0
	Disconnect   byte = 1
	Event        byte = 2
	Ack          byte = 3
	ConnectError byte = 4
	BinaryEvent  byte = 5
	BinaryAck    byte = 6
)

// MaxAttachments bounds the binary attachments of one packet. The reference
// parser has no bound; a packet announcing more is refused as malformed.
const MaxAttachments = 64

// maxID is the largest ack id kept exact by the JavaScript number type.
const maxID = 1<<53 - 1

// ErrParse wraps every decoding error; the server closes the connection on it.
var ErrParse = errors.New("sio: invalid packet")

// reserved event names may not be sent by a client.
var reserved = map[string]bool{
	"connect": true, "connect_error": true, "disconnect": true,
	"disconnecting": true, "newListener": true, "removeListener": true,
}

// Packet is one Socket.IO packet. Data is the JSON payload (nil when absent);
// in binary packets it holds {"_placeholder":true,"num":N} objects where the
// attachments go. ID is -1 when the packet carries no ack id.
type Packet struct {
	Type        byte
	Namespace   string
	ID          int64
	Data        json.RawMessage
	Attachments int
	// Event is the event name of a decoded EVENT or BINARY_EVENT (a number's
	// JSON text when the first element is a number).
	Event string
}

func parseErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrParse, fmt.Sprintf(format, args...))
}

// Decode decodes the text form of a packet. Data aliases s.
func Decode(s []byte) (Packet, error) {
	p := Packet{ID: -1, Namespace: "/"}
	if len(s) == 0 || s[0] < '0' || s[0] > '0'+BinaryAck {
		return p, parseErr("unknown packet type")
	}
	p.Type = s[0] - '0'
	i := 1
	if p.Type == BinaryEvent || p.Type == BinaryAck {
		start := i
		for i < len(s) && s[i] != '-' {
			if s[i] < '0' || s[i] > '9' {
				return p, parseErr("illegal attachments")
			}
			i++
		}
		if i == len(s) {
			return p, parseErr("illegal attachments")
		}
		n := 0
		if i > start {
			v, err := strconv.Atoi(string(s[start:i]))
			if err != nil || v > MaxAttachments {
				return p, parseErr("illegal attachments")
			}
			n = v
		}
		p.Attachments = n
		i++ // the '-'
	}
	if i < len(s) && s[i] == '/' {
		start := i
		for i < len(s) && s[i] != ',' {
			i++
		}
		p.Namespace = string(s[start:i])
		if i < len(s) {
			i++ // the ','
		}
	}
	if i < len(s) && s[i] >= '0' && s[i] <= '9' {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		id, err := strconv.ParseInt(string(s[start:i]), 10, 64)
		if err != nil || id > maxID {
			return p, parseErr("invalid ack id")
		}
		p.ID = id
	}
	if i < len(s) {
		p.Data = s[i:]
		if !json.Valid(p.Data) {
			return p, parseErr("invalid payload")
		}
	}
	if !payloadValid(&p) {
		return p, parseErr("invalid payload")
	}
	return p, nil
}

func firstByte(d []byte) byte {
	d = bytes.TrimLeft(d, " \t\r\n")
	if len(d) == 0 {
		return 0
	}
	return d[0]
}

func payloadValid(p *Packet) bool {
	switch p.Type {
	case Connect:
		return p.Data == nil || firstByte(p.Data) == '{'
	case Disconnect:
		return p.Data == nil
	case ConnectError:
		c := firstByte(p.Data)
		return c == '{' || c == '"'
	case Event, BinaryEvent:
		if p.Data == nil {
			return true // the reference treats a missing payload as no arguments
		}
		d := bytes.TrimLeft(p.Data, " \t\r\n")
		if len(d) == 0 || d[0] != '[' {
			return false
		}
		first := bytes.TrimLeft(d[1:], " \t\r\n")
		if len(first) == 0 {
			return false
		}
		switch c := first[0]; {
		case c == '"':
			name, ok := leadingString(first)
			if !ok || reserved[name] {
				return false
			}
			p.Event = name
			return true
		case c == '-' || (c >= '0' && c <= '9'):
			end := bytes.IndexAny(first, ", \t\r\n]")
			if end < 0 {
				return false
			}
			p.Event = string(first[:end])
			return true
		}
		return false
	case Ack, BinaryAck:
		return p.Data == nil || firstByte(p.Data) == '['
	}
	return false
}

// leadingString decodes the JSON string at the start of b (already known to
// be valid JSON as part of a larger document).
func leadingString(b []byte) (string, bool) {
	escaped := false
	for i := 1; i < len(b); i++ {
		switch b[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			if !escaped {
				return string(b[1:i]), true
			}
			var s string
			if json.Unmarshal(b[:i+1], &s) != nil {
				return "", false
			}
			return s, true
		}
	}
	return "", false
}

// Append appends the text form of p.
func Append(dst []byte, p Packet) []byte {
	dst = append(dst, '0'+p.Type)
	if p.Type == BinaryEvent || p.Type == BinaryAck {
		dst = strconv.AppendInt(dst, int64(p.Attachments), 10)
		dst = append(dst, '-')
	}
	if p.Namespace != "" && p.Namespace != "/" {
		dst = append(dst, p.Namespace...)
		dst = append(dst, ',')
	}
	if p.ID >= 0 {
		dst = strconv.AppendInt(dst, p.ID, 10)
	}
	return append(dst, p.Data...)
}

// CheckAttachments verifies that every placeholder in data refers to one of
// n attachments, as the reference decoder does when it reconstructs a packet.
func CheckAttachments(data json.RawMessage, n int) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return parseErr("invalid payload")
	}
	if !placeholdersValid(v, n) {
		return parseErr("illegal attachments")
	}
	return nil
}

func placeholdersValid(v any, n int) bool {
	switch t := v.(type) {
	case []any:
		for _, e := range t {
			if !placeholdersValid(e, n) {
				return false
			}
		}
	case map[string]any:
		if t["_placeholder"] == true {
			num, ok := t["num"].(float64)
			return ok && num >= 0 && num < float64(n) && num == float64(int(num))
		}
		for _, e := range t {
			if !placeholdersValid(e, n) {
				return false
			}
		}
	}
	return true
}

// Placeholder is the JSON that stands for attachment num in a binary packet.
func Placeholder(num int) json.RawMessage {
	return json.RawMessage(`{"_placeholder":true,"num":` + strconv.Itoa(num) + `}`)
}
