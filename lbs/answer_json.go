package lbs

import (
	"strconv"
	"unicode/utf8"

	"github.com/longlink/longlink/lbs/lbsapi"
)

// appendAnswer appends a's JSON encoding byte for byte as encoding/json's
// Encoder writes it (field order, omitempty, HTML-safe string escaping, a
// trailing newline). The SDK query is the LBS's hottest HTTP path, and
// reflection was a quarter of its handler's CPU. TestAppendAnswer and
// FuzzAppendAnswer hold it to encoding/json.
func appendAnswer(b []byte, a *lbsapi.Answer) []byte {
	b = append(b, `{"appkey":`...)
	b = appendJSONString(b, a.AppKey)
	b = append(b, `,"rule":`...)
	b = appendJSONString(b, a.Rule)
	b = append(b, `,"policy_version":`...)
	b = strconv.AppendUint(b, a.PolicyVersion, 10)
	b = append(b, `,"raft_index":`...)
	b = strconv.AppendUint(b, a.RaftIndex, 10)
	b = append(b, `,"staleness_ms":`...)
	b = strconv.AppendInt(b, a.StalenessMs, 10)
	b = append(b, `,"ttl":`...)
	b = strconv.AppendInt(b, int64(a.TTL), 10)
	b = append(b, `,"client_ip":`...)
	b = appendJSONString(b, a.ClientIP)
	if a.Country != "" {
		b = append(b, `,"country":`...)
		b = appendJSONString(b, a.Country)
	}
	b = append(b, `,"link":`...)
	b = appendEndpoints(b, a.Link)
	b = append(b, `,"weblink":`...)
	b = appendEndpoints(b, a.WebLink)
	b = append(b, `,"turn":`...)
	b = appendEndpoints(b, a.TURN)
	if a.Source != "" {
		b = append(b, `,"source":`...)
		b = appendJSONString(b, a.Source)
	}
	return append(b, "}\n"...)
}

func appendEndpoints(b []byte, eps []lbsapi.Endpoint) []byte {
	if eps == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i := range eps {
		if i > 0 {
			b = append(b, ',')
		}
		e := &eps[i]
		b = append(b, `{"id":`...)
		b = appendJSONString(b, e.ID)
		b = append(b, `,"site":`...)
		b = appendJSONString(b, e.Site)
		if e.Host != "" {
			b = append(b, `,"host":`...)
			b = appendJSONString(b, e.Host)
		}
		if e.Port != 0 {
			b = append(b, `,"port":`...)
			b = strconv.AppendInt(b, int64(e.Port), 10)
		}
		if e.URL != "" {
			b = append(b, `,"url":`...)
			b = appendJSONString(b, e.URL)
		}
		b = append(b, `,"weight":`...)
		b = strconv.AppendInt(b, int64(e.Weight), 10)
		if len(e.KeyIDs) > 0 {
			b = append(b, `,"key_ids":[`...)
			for j, k := range e.KeyIDs {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, k)
			}
			b = append(b, ']')
		}
		if e.Fallback {
			b = append(b, `,"fallback":true`...)
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as encoding/json does with HTML escaping on:
// <, > and & as \u003c, \u003e, \u0026; control characters as \b \f \n \r
// \t or \u00XX; invalid UTF-8 as \ufffd; U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		} else if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		} else {
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
