package lbs

import (
	"strconv"

	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/pkg/jsonenc"
)

// appendAnswer appends a's JSON encoding byte for byte as encoding/json's
// Encoder writes it (field order, omitempty, HTML-safe string escaping, a
// trailing newline). The SDK query is the LBS's hottest HTTP path, and
// reflection was a quarter of its handler's CPU. TestAppendAnswer and
// FuzzAppendAnswer hold it to encoding/json.
func appendAnswer(b []byte, a *lbsapi.Answer) []byte {
	b = append(b, `{"appkey":`...)
	b = jsonenc.AppendString(b, a.AppKey)
	b = append(b, `,"rule":`...)
	b = jsonenc.AppendString(b, a.Rule)
	b = append(b, `,"policy_version":`...)
	b = strconv.AppendUint(b, a.PolicyVersion, 10)
	b = append(b, `,"raft_index":`...)
	b = strconv.AppendUint(b, a.RaftIndex, 10)
	b = append(b, `,"staleness_ms":`...)
	b = strconv.AppendInt(b, a.StalenessMs, 10)
	b = append(b, `,"ttl":`...)
	b = strconv.AppendInt(b, int64(a.TTL), 10)
	b = append(b, `,"client_ip":`...)
	b = jsonenc.AppendString(b, a.ClientIP)
	if a.Country != "" {
		b = append(b, `,"country":`...)
		b = jsonenc.AppendString(b, a.Country)
	}
	b = append(b, `,"link":`...)
	b = appendEndpoints(b, a.Link)
	if len(a.LinkQUIC) > 0 {
		b = append(b, `,"link_quic":`...)
		b = appendEndpoints(b, a.LinkQUIC)
	}
	b = append(b, `,"weblink":`...)
	b = appendEndpoints(b, a.WebLink)
	b = append(b, `,"turn":`...)
	b = appendEndpoints(b, a.TURN)
	if a.Source != "" {
		b = append(b, `,"source":`...)
		b = jsonenc.AppendString(b, a.Source)
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
		b = jsonenc.AppendString(b, e.ID)
		b = append(b, `,"site":`...)
		b = jsonenc.AppendString(b, e.Site)
		if e.Host != "" {
			b = append(b, `,"host":`...)
			b = jsonenc.AppendString(b, e.Host)
		}
		if e.Port != 0 {
			b = append(b, `,"port":`...)
			b = strconv.AppendInt(b, int64(e.Port), 10)
		}
		if e.URL != "" {
			b = append(b, `,"url":`...)
			b = jsonenc.AppendString(b, e.URL)
		}
		b = append(b, `,"weight":`...)
		b = strconv.AppendInt(b, int64(e.Weight), 10)
		if len(e.KeyIDs) > 0 {
			b = append(b, `,"key_ids":[`...)
			for j, k := range e.KeyIDs {
				if j > 0 {
					b = append(b, ',')
				}
				b = jsonenc.AppendString(b, k)
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
