package lbs

import (
	"bytes"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/longlink/longlink/lbs/internal/engine"
	"github.com/longlink/longlink/lbs/lbsapi"
)

func (l *LBS) clientHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+lbsapi.PathQuery, l.handleQuery)
	mux.HandleFunc("GET "+lbsapi.PathResolve, l.handleResolve)
	return mux
}

var jsonBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// writeJSON sends v with a Content-Length (no chunked encoding).
func writeJSON(w http.ResponseWriter, code int, v any) {
	buf := jsonBufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer jsonBufs.Put(buf)
	if err := json.NewEncoder(buf).Encode(v); err != nil {
		http.Error(w, `{"error":"encoding"}`, http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h["Content-Type"] = jsonType
	h["Cache-Control"] = noStore
	h["Content-Length"] = []string{strconv.Itoa(buf.Len())}
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

var (
	jsonType = []string{"application/json"}
	noStore  = []string{"no-store"}
)

func writeErr(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, lbsapi.Error{Error: msg})
}

// clientIP is the socket's peer, or the right-most X-Forwarded-For address
// not in the trusted proxies when the peer is a trusted proxy.
func (l *LBS) clientIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	ip := ap.Addr().Unmap()
	if !l.isTrusted(ip) {
		return ip
	}
	xff := r.Header.Values("X-Forwarded-For")
	for i := len(xff) - 1; i >= 0; i-- {
		parts := strings.Split(xff[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return ip // garbage: stop believing the chain
			}
			a = a.Unmap()
			if !l.isTrusted(a) {
				return a
			}
			ip = a
		}
	}
	return ip
}

func (l *LBS) isTrusted(ip netip.Addr) bool {
	for _, p := range l.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

const maxParam = 128

// queryParams reads and bounds the SDK's parameters.
func queryParams(q url.Values) (appkey, env, sdk, platform string, err error) {
	get := func(k string) (string, error) {
		vs := q[k]
		if len(vs) > 1 {
			return "", errors.New(k + ": given more than once")
		}
		if len(vs) == 0 {
			return "", nil
		}
		if len(vs[0]) > maxParam {
			return "", errors.New(k + ": too long")
		}
		return vs[0], nil
	}
	if appkey, err = get("appkey"); err != nil {
		return
	}
	if appkey == "" {
		err = errors.New("appkey: required")
		return
	}
	if env, err = get("env"); err != nil {
		return
	}
	if sdk, err = get("sdk"); err != nil {
		return
	}
	platform, err = get("platform")
	return
}

func (l *LBS) handleQuery(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	appkey, env, sdk, platform, err := queryParams(q)
	if err != nil {
		l.m.httpBad.Inc()
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	snap := l.fsm.Current()
	if secret := snap.Engine.SigningSecret(appkey); secret != "" {
		ts, sig := q.Get("ts"), q.Get("sig")
		n, perr := strconv.ParseInt(ts, 10, 64)
		if perr != nil || time.Since(time.Unix(n, 0)).Abs() > 5*time.Minute ||
			!hmac.Equal([]byte(sig), []byte(lbsapi.Sign(secret, appkey, env, sdk, platform, ts))) {
			l.m.httpSig.Inc()
			writeErr(w, http.StatusUnauthorized, "bad or missing request signature")
			return
		}
	}
	ip := l.clientIP(r)
	req := engine.Request{AppKey: appkey, Env: env, SDK: sdk, Platform: platform, Client: ip}
	sample := ip.IsValid() && ip.As16()[15]&63 == 0
	var t0 time.Time
	if sample {
		t0 = time.Now()
	}
	res, snap, err := l.query(&req)
	if sample {
		l.m.selectSeconds.Observe(time.Since(t0).Seconds())
	}
	if errors.Is(err, engine.ErrUnknownApp) {
		l.m.httpUnknown.Inc()
		writeErr(w, http.StatusNotFound, "unknown appkey")
		return
	}
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err.Error())
		return
	}
	l.m.httpOK.Inc()
	ans := lbsapi.Answer{AppKey: appkey, Rule: res.Rule, PolicyVersion: snap.State.Version, RaftIndex: snap.State.Index,
		TTL: int(res.TTL / time.Second), ClientIP: ip.String(), Country: req.Loc.Country,
		Link: []lbsapi.Endpoint{}, WebLink: []lbsapi.Endpoint{}, TURN: []lbsapi.Endpoint{}}
	if st := l.staleness(); st >= 0 {
		ans.StalenessMs = st.Milliseconds()
	} else {
		ans.StalenessMs = -1
	}
	for _, c := range res.Candidates {
		ep := c.EP
		base := lbsapi.Endpoint{ID: ep.ID, Site: ep.Site, Weight: int(c.Weight()), KeyIDs: ep.KeyIDs, Fallback: c == res.Fallback}
		if ep.Link != "" {
			e := base
			e.Host, e.Port = splitHostPort(ep.Link)
			ans.Link = append(ans.Link, e)
		}
		if ep.WebLink != "" {
			e := base
			e.URL = ep.WebLink
			ans.WebLink = append(ans.WebLink, e)
		}
		if ep.TURN != "" {
			e := base
			e.Host, e.Port = splitHostPort(ep.TURN)
			ans.TURN = append(ans.TURN, e)
		}
	}
	writeJSON(w, http.StatusOK, &ans)
}

func splitHostPort(hp string) (string, int) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return hp, 0
	}
	n, _ := strconv.Atoi(p)
	return h, n
}

// resolveAnswer is Google's DNS-over-HTTPS JSON format.
type resolveAnswer struct {
	Status           int         `json:"Status"`
	TC               bool        `json:"TC"`
	RD               bool        `json:"RD"`
	RA               bool        `json:"RA"`
	AD               bool        `json:"AD"`
	CD               bool        `json:"CD"`
	Question         []resolveRR `json:"Question"`
	Answer           []resolveRR `json:"Answer,omitempty"`
	Authority        []resolveRR `json:"Authority,omitempty"`
	EdnsClientSubnet string      `json:"edns_client_subnet,omitempty"`
	Comment          string      `json:"Comment,omitempty"`
}

type resolveRR struct {
	Name string `json:"name"`
	Type uint16 `json:"type"`
	TTL  uint32 `json:"TTL,omitempty"`
	Data string `json:"data,omitempty"`
}

// handleResolve answers GET /resolve?name=…&type=…[&edns_client_subnet=…]
// from the same zone as the DNS front end.
func (l *LBS) handleResolve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name := q.Get("name")
	if name == "" || len(name) > 253 {
		writeErr(w, http.StatusBadRequest, "name: required, at most 253 characters")
		return
	}
	qtype := dns.TypeA
	if t := q.Get("type"); t != "" {
		if n, err := strconv.Atoi(t); err == nil && n > 0 && n < 65536 {
			qtype = uint16(n)
		} else if v, ok := dns.StringToType[strings.ToUpper(t)]; ok {
			qtype = v
		} else {
			writeErr(w, http.StatusBadRequest, "type: unknown")
			return
		}
	}
	fq := dns.Fqdn(name)
	if _, ok := dns.IsDomainName(fq); !ok {
		writeErr(w, http.StatusBadRequest, "name: not a domain name")
		return
	}
	client := l.clientIP(r)
	scopeSrc := netip.Prefix{}
	if ecs := q.Get("edns_client_subnet"); ecs != "" {
		p, err := netip.ParsePrefix(ecs)
		if err != nil {
			a, aerr := netip.ParseAddr(ecs)
			if aerr != nil {
				writeErr(w, http.StatusBadRequest, "edns_client_subnet: not an address or prefix")
				return
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		scopeSrc = p.Masked()
		client = scopeSrc.Addr()
	}
	resp := l.dnsAnswer(&dnsRequest{rd: true, questions: 1, q: dns.Question{Name: fq, Qtype: qtype, Qclass: dns.ClassINET}, ecs: scopeSrc},
		client, 65535)
	out := resolveAnswer{Status: resp.Rcode, TC: resp.Truncated, RD: resp.RecursionDesired, RA: false,
		Question: []resolveRR{{Name: fq, Type: qtype}}}
	if scopeSrc.IsValid() {
		out.EdnsClientSubnet = scopeSrc.String()
	}
	for _, rr := range resp.Answer {
		out.Answer = append(out.Answer, toResolveRR(rr))
	}
	for _, rr := range resp.Ns {
		out.Authority = append(out.Authority, toResolveRR(rr))
	}
	writeJSON(w, http.StatusOK, &out)
}

func toResolveRR(rr dns.RR) resolveRR {
	h := rr.Header()
	data := strings.TrimPrefix(rr.String(), h.String())
	return resolveRR{Name: h.Name, Type: h.Rrtype, TTL: h.Ttl, Data: data}
}
