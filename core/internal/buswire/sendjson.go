package buswire

import (
	"encoding/json"
	"strconv"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/pkg/jsonenc"
)

// Hand-written codecs of the send path's bodies: the batch a gateway sends
// (SendBatchReq, each send an imapi.SendReq), the service's answer
// (SendBatchResp), the ack the gateway passes on (imapi.SendAck) and the
// pushed message (imapi.Message). Same rules as the envelopes' codecs
// (json.go), and one more: a body travels inside an envelope whose decoder
// has checked the whole envelope as JSON, so the decoders below take valid
// JSON and do not check it again — each send's bytes are scanned once
// (DecodeRequest's check) instead of three times. Given anything else they
// return some result or an error, never panic (FuzzSendBodies).

// DecodeSendBatchReq resets r and decodes data into it as json.Unmarshal
// would. data must be valid JSON: the body of a Request that DecodeRequest
// decoded. The sends alias data.
func DecodeSendBatchReq(data []byte, r *SendBatchReq) error {
	*r = SendBatchReq{}
	if !decodeSendBatchReq(data, r) {
		*r = SendBatchReq{}
		return json.Unmarshal(data, r)
	}
	return nil
}

// DecodeValidSendReq is DecodeSendReq for valid JSON: a send of a batch
// that DecodeSendBatchReq decoded.
func DecodeValidSendReq(data []byte, r *imapi.SendReq) error {
	*r = imapi.SendReq{}
	if !decodeSendReq(data, r) {
		*r = imapi.SendReq{}
		return json.Unmarshal(data, r)
	}
	return nil
}

// DecodeSendBatchResp resets r and decodes data into it as json.Unmarshal
// would. data must be valid JSON: the body of a Reply that DecodeReply
// decoded.
func DecodeSendBatchResp(data []byte, r *SendBatchResp) error {
	*r = SendBatchResp{}
	if !decodeSendBatchResp(data, r) {
		*r = SendBatchResp{}
		return json.Unmarshal(data, r)
	}
	return nil
}

func decodeSendBatchReq(data []byte, r *SendBatchReq) bool {
	seen := false
	return members(data, func(key, v []byte) bool {
		if string(key) != "sends" || seen {
			return false
		}
		seen = true
		sends := []json.RawMessage{} // encoding/json: an empty array is not nil
		ok := elements(v, func(e []byte) bool {
			if e[0] == 'n' { // null: left to encoding/json
				return false
			}
			sends = append(sends, e)
			return true
		})
		r.Sends = sends
		return ok
	})
}

func decodeSendBatchResp(data []byte, r *SendBatchResp) bool {
	seen := false
	return members(data, func(key, v []byte) bool {
		if string(key) != "results" || seen {
			return false
		}
		seen = true
		results := []SendResult{}
		ok := elements(v, func(e []byte) bool {
			results = append(results, SendResult{})
			return decodeSendResult(e, &results[len(results)-1])
		})
		r.Results = results
		return ok
	})
}

func decodeSendResult(data []byte, r *SendResult) bool {
	var seen uint8 // keys met, one bit each: a repeated key is left to encoding/json
	return members(data, func(key, v []byte) bool {
		var bit uint8
		ok := false
		switch string(key) {
		case "code":
			bit = 1
			var n uint64
			n, ok = plainUint(v, 1<<16-1)
			r.Code = imapi.Code(n)
		case "message":
			bit = 2
			ok = plainString(v, &r.Message)
		case "retry_after_ms":
			bit = 4
			var n uint64
			n, ok = plainUint(v, 1<<53)
			r.RetryAfterMs = int64(n)
		case "ack":
			bit = 8
			r.Ack = new(imapi.SendAck)
			ok = decodeSendAck(v, r.Ack)
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return ok
	})
}

func decodeSendAck(data []byte, a *imapi.SendAck) bool {
	return members(data, func(key, v []byte) bool {
		switch string(key) {
		case "msg_id":
			return plainString(v, &a.MsgID)
		case "conv_id":
			return plainString(v, &a.ConvID)
		case "seq":
			n, ok := plainUint(v, 1<<53)
			a.Seq = int64(n)
			return ok
		case "time":
			n, ok := plainUint(v, 1<<53)
			a.Time = int64(n)
			return ok
		}
		return false
	})
}

// elements calls element for each value of the JSON array in v, which
// must be valid JSON; false when v is not an array or element returns
// false.
func elements(v []byte, element func(e []byte) bool) bool {
	i := skipSpace(v, 0)
	if i >= len(v) || v[i] != '[' {
		return false
	}
	i = skipSpace(v, i+1)
	if i < len(v) && v[i] == ']' {
		return true
	}
	for i < len(v) {
		end := valueEnd(v, i)
		if end <= i || !element(v[i:end]) {
			return false
		}
		i = skipSpace(v, end)
		if i >= len(v) {
			return false
		}
		switch v[i] {
		case ',':
			i = skipSpace(v, i+1)
		case ']':
			return true
		default:
			return false
		}
	}
	return false
}

// AppendSendBatchResp appends the JSON of r to dst, as json.Marshal writes
// it.
func AppendSendBatchResp(dst []byte, r *SendBatchResp) []byte {
	if r.Results == nil {
		return append(dst, `{"results":null}`...)
	}
	dst = append(dst, `{"results":[`...)
	for i := range r.Results {
		if i > 0 {
			dst = append(dst, ',')
		}
		res := &r.Results[i]
		dst = append(dst, '{')
		sep := false
		field := func(name string) {
			if sep {
				dst = append(dst, ',')
			}
			sep = true
			dst = append(dst, name...)
		}
		if res.Code != 0 {
			field(`"code":`)
			dst = strconv.AppendUint(dst, uint64(res.Code), 10)
		}
		if res.Message != "" {
			field(`"message":`)
			dst = jsonenc.AppendString(dst, res.Message)
		}
		if res.RetryAfterMs != 0 {
			field(`"retry_after_ms":`)
			dst = strconv.AppendInt(dst, res.RetryAfterMs, 10)
		}
		if res.Ack != nil {
			field(`"ack":`)
			dst = AppendSendAck(dst, res.Ack)
		}
		dst = append(dst, '}')
	}
	return append(dst, "]}"...)
}

// AppendJSON is AppendSendBatchResp: the service's dispatcher encodes the
// answer with it.
func (r *SendBatchResp) AppendJSON(dst []byte) []byte { return AppendSendBatchResp(dst, r) }

// AppendSendAck appends the JSON of a to dst, as json.Marshal writes it.
func AppendSendAck(dst []byte, a *imapi.SendAck) []byte {
	dst = append(dst, `{"msg_id":`...)
	dst = jsonenc.AppendString(dst, a.MsgID)
	dst = append(dst, `,"conv_id":`...)
	dst = jsonenc.AppendString(dst, a.ConvID)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendInt(dst, a.Seq, 10)
	dst = append(dst, `,"time":`...)
	dst = strconv.AppendInt(dst, a.Time, 10)
	return append(dst, '}')
}

// AppendMessage appends the JSON of m to dst, as json.Marshal writes it;
// m.Body must be valid JSON (a stored message's is). A body that
// json.Marshal would rewrite (whitespace between its tokens, HTML
// characters, U+2028 or U+2029) is rewritten by encoding/json.
func AppendMessage(dst []byte, m *imapi.Message) ([]byte, error) {
	dst = append(dst, `{"msg_id":`...)
	dst = jsonenc.AppendString(dst, m.MsgID)
	dst = append(dst, `,"conv_id":`...)
	dst = jsonenc.AppendString(dst, m.ConvID)
	dst = append(dst, `,"conv_type":`...)
	dst = strconv.AppendInt(dst, int64(m.ConvType), 10)
	dst = append(dst, `,"from":`...)
	dst = jsonenc.AppendString(dst, m.From)
	if m.FromDevice != "" {
		dst = append(dst, `,"from_device":`...)
		dst = jsonenc.AppendString(dst, m.FromDevice)
	}
	dst = append(dst, `,"to":`...)
	dst = jsonenc.AppendString(dst, m.To)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendInt(dst, m.Seq, 10)
	dst = append(dst, `,"client_msg_id":`...)
	dst = jsonenc.AppendString(dst, m.ClientMsgID)
	dst = append(dst, `,"type":`...)
	dst = jsonenc.AppendString(dst, m.Type)
	dst = append(dst, `,"body":`...)
	switch {
	case m.Body == nil:
		dst = append(dst, "null"...)
	case len(m.Body) > 0 && compactSafe(m.Body):
		dst = append(dst, m.Body...)
	default:
		b, err := json.Marshal(m.Body)
		if err != nil {
			return dst, err
		}
		dst = append(dst, b...)
	}
	if len(m.Mentions) > 0 {
		dst = append(dst, `,"mentions":[`...)
		for i, s := range m.Mentions {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = jsonenc.AppendString(dst, s)
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"time":`...)
	dst = strconv.AppendInt(dst, m.Time, 10)
	if m.Recalled {
		dst = append(dst, `,"recalled":true`...)
	}
	return append(dst, '}'), nil
}

// compactSafe reports whether json.Marshal writes the valid JSON b as it
// is: no whitespace outside strings, no character it escapes for HTML
// (<, >, &) and no byte that may start U+2028 or U+2029.
func compactSafe(b []byte) bool {
	in := false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			in = !in
		case '\\':
			if in {
				i++ // the escaped character, '"' included
			}
		case ' ', '\t', '\n', '\r':
			if !in {
				return false
			}
		case '<', '>', '&', 0xE2:
			return false
		}
	}
	return true
}
