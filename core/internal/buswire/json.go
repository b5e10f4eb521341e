package buswire

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/pkg/jsonenc"
)

// Hand-written codecs for the bus envelopes and the send request. Every
// durable send crosses three envelopes (the request, the reply, a push per
// member) and its SendReq, and encoding/json's reflection over them was
// about a fifth of the CPU of a send. The wire format stays the JSON of the
// struct tags:
//
//   - the Append functions write byte for byte what json.Marshal writes
//     (strings escaped as it escapes them, jsonenc.AppendString; bodies as
//     they are: they must be compact, HTML-escaped JSON, as json.Marshal
//     produces; TestBusEncodersMatchMarshal);
//   - the Decode functions first check that the input is valid JSON
//     (jsonenc.Valid, encoding/json.Valid's answer, faster), then
//     read the form the encoders and json.Marshal produce. Anything else
//     (escaped or non-UTF-8 strings, keys spelled differently, nulls,
//     numbers out of range) goes to encoding/json, so they accept what it
//     accepts with the same result. Bodies alias data.

// AppendPush appends the JSON of p to dst.
func AppendPush(dst []byte, p *Push) []byte {
	dst = append(dst, `{"op":`...)
	dst = appendOp(dst, p.Op)
	dst = append(dst, `,"body":`...)
	dst = appendRaw(dst, p.Body)
	if p.ExceptSession != "" {
		dst = append(dst, `,"except_session":`...)
		dst = jsonenc.AppendString(dst, p.ExceptSession)
	}
	if p.OnlySession != "" {
		dst = append(dst, `,"only_session":`...)
		dst = jsonenc.AppendString(dst, p.OnlySession)
	}
	if p.KickDeviceType != "" {
		dst = append(dst, `,"kick_device_type":`...)
		dst = jsonenc.AppendString(dst, p.KickDeviceType)
	}
	return append(dst, '}')
}

// AppendReply appends the JSON of r to dst.
func AppendReply(dst []byte, r *Reply) []byte {
	dst = append(dst, `{"code":`...)
	dst = strconv.AppendUint(dst, uint64(r.Code), 10)
	if r.Message != "" {
		dst = append(dst, `,"message":`...)
		dst = jsonenc.AppendString(dst, r.Message)
	}
	if len(r.Body) > 0 {
		dst = append(dst, `,"body":`...)
		dst = append(dst, r.Body...)
	}
	return append(dst, '}')
}

// DecodeRequest resets r and decodes data into it as json.Unmarshal would.
func DecodeRequest(data []byte, r *Request) error {
	*r = Request{}
	if !jsonenc.Valid(data) || !decodeRequest(data, r) {
		*r = Request{}
		return json.Unmarshal(data, r)
	}
	return nil
}

// DecodePush resets p and decodes data into it as json.Unmarshal would.
func DecodePush(data []byte, p *Push) error {
	*p = Push{}
	if !jsonenc.Valid(data) || !decodePush(data, p) {
		*p = Push{}
		return json.Unmarshal(data, p)
	}
	return nil
}

// DecodeReply resets r and decodes data into it as json.Unmarshal would.
func DecodeReply(data []byte, r *Reply) error {
	*r = Reply{}
	if !jsonenc.Valid(data) || !decodeReply(data, r) {
		*r = Reply{}
		return json.Unmarshal(data, r)
	}
	return nil
}

// DecodeSendReq resets r and decodes data into it as json.Unmarshal would.
func DecodeSendReq(data []byte, r *imapi.SendReq) error {
	*r = imapi.SendReq{}
	if !jsonenc.Valid(data) || !decodeSendReq(data, r) {
		*r = imapi.SendReq{}
		return json.Unmarshal(data, r)
	}
	return nil
}

func decodeSendReq(data []byte, r *imapi.SendReq) bool {
	return members(data, func(key, v []byte) bool {
		switch string(key) {
		case "conv_type":
			n, ok := plainUint(v, 1<<16-1)
			r.ConvType = int(n)
			return ok
		case "to":
			return plainString(v, &r.To)
		case "client_msg_id":
			return plainString(v, &r.ClientMsgID)
		case "type":
			return plainString(v, &r.Type)
		case "body":
			r.Body = v
			return true
		case "mentions":
			return plainStrings(v, &r.Mentions)
		}
		return false
	})
}

// plainStrings sets *dst from a JSON array of plain strings (see
// plainString); false for anything else (null included).
func plainStrings(v []byte, dst *[]string) bool {
	out := (*dst)[:0]
	if !elements(v, func(e []byte) bool {
		var s string
		if !plainString(e, &s) {
			return false
		}
		out = append(out, s)
		return true
	}) {
		return false
	}
	if out == nil {
		out = []string{} // encoding/json: an empty array is not nil
	}
	*dst = out
	return true
}

func decodeRequest(data []byte, r *Request) bool {
	return members(data, func(key []byte, v []byte) bool {
		switch string(key) {
		case "session":
			return decodeSession(v, &r.Session)
		case "sent":
			n, ok := plainUint(v, 1<<53)
			r.Sent = int64(n)
			return ok
		case "body":
			r.Body = v
			return true
		}
		return false
	})
}

func decodeSession(data []byte, s *Session) bool {
	return members(data, func(key []byte, v []byte) bool {
		var dst *string
		switch string(key) {
		case "appkey":
			dst = &s.AppKey
		case "account":
			dst = &s.Account
		case "device_id":
			dst = &s.DeviceID
		case "device_type":
			dst = &s.DeviceType
		case "session_id":
			dst = &s.SessionID
		case "gateway":
			dst = &s.Gateway
		case "client_ip":
			dst = &s.ClientIP
		case "sdk":
			dst = &s.SDK
		default:
			return false
		}
		return plainString(v, dst)
	})
}

func decodePush(data []byte, p *Push) bool {
	return members(data, func(key []byte, v []byte) bool {
		switch string(key) {
		case "op":
			return decodeOp(v, &p.Op)
		case "body":
			p.Body = v
			return true
		case "except_session":
			return plainString(v, &p.ExceptSession)
		case "only_session":
			return plainString(v, &p.OnlySession)
		case "kick_device_type":
			return plainString(v, &p.KickDeviceType)
		}
		return false
	})
}

func decodeReply(data []byte, r *Reply) bool {
	return members(data, func(key []byte, v []byte) bool {
		switch string(key) {
		case "code":
			n, ok := plainUint(v, 1<<16-1)
			r.Code = imapi.Code(n)
			return ok
		case "message":
			return plainString(v, &r.Message)
		case "body":
			r.Body = v
			return true
		}
		return false
	})
}

func decodeOp(data []byte, op *imapi.Op) bool {
	return members(data, func(key []byte, v []byte) bool {
		n, ok := plainUint(v, 255)
		switch string(key) {
		case "Service":
			op.Service = uint8(n)
		case "Command":
			op.Command = uint8(n)
		default:
			return false
		}
		return ok
	})
}

// members calls member for each key and raw value of the JSON object in
// data, which must be valid JSON. It returns false when data is not an
// object, a key has an escape, or member returns false.
func members(data []byte, member func(key, v []byte) bool) bool {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return true
	}
	for i < len(data) {
		if data[i] != '"' {
			return false
		}
		end := stringEnd(data, i)
		if end < 0 {
			return false
		}
		key := data[i+1 : end-1]
		for _, c := range key {
			if c == '\\' {
				return false
			}
		}
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return false
		}
		i = skipSpace(data, i+1)
		vend := valueEnd(data, i)
		if vend < 0 || !member(key, data[i:vend]) {
			return false
		}
		i = skipSpace(data, vend)
		if i >= len(data) {
			return false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return true
		default:
			return false
		}
	}
	return false
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// stringEnd returns the index after the string starting at data[i] ('"'),
// or -1.
func stringEnd(data []byte, i int) int {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// valueEnd returns the index after the value starting at data[i], or -1.
// data is valid JSON, so only strings and nesting need tracking.
func valueEnd(data []byte, i int) int {
	if i >= len(data) {
		return -1
	}
	switch data[i] {
	case '"':
		return stringEnd(data, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				e := stringEnd(data, j)
				if e < 0 {
					return -1
				}
				j = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(data) {
		switch data[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return j
		}
		j++
	}
	return j
}

// plainString sets *dst from a JSON string without escapes in valid UTF-8
// (what the fast path reads); false for anything else.
func plainString(v []byte, dst *string) bool {
	if len(v) < 2 || v[0] != '"' {
		return false
	}
	s := v[1 : len(v)-1]
	ascii := true
	for _, c := range s {
		if c == '\\' {
			return false
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	if !ascii && !utf8.Valid(s) {
		return false
	}
	*dst = string(s)
	return true
}

// plainUint reads a JSON number made of digits only, at most max.
func plainUint(v []byte, max uint64) (uint64, bool) {
	if len(v) == 0 || len(v) > 16 { // 16 digits never overflow
		return 0, false
	}
	var n uint64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, n <= max
}

func appendOp(dst []byte, op imapi.Op) []byte {
	dst = append(dst, `{"Service":`...)
	dst = strconv.AppendUint(dst, uint64(op.Service), 10)
	dst = append(dst, `,"Command":`...)
	dst = strconv.AppendUint(dst, uint64(op.Command), 10)
	return append(dst, '}')
}

// appendRaw appends a body as json.Marshal writes a json.RawMessage:
// null when empty.
func appendRaw(dst []byte, b []byte) []byte {
	if len(b) == 0 {
		return append(dst, "null"...)
	}
	return append(dst, b...)
}
