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
	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/lbs/internal/engine"
	"github.com/longlink/longlink/lbs/lbsapi"
)

func (l *LBS) clientHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+lbsapi.PathQuery, l.whenCaughtUp(http.HandlerFunc(l.handleQuery), l.m.httpNotReady))
	mux.Handle("GET "+lbsapi.PathResolve, l.whenCaughtUp(http.HandlerFunc(l.handleResolve), l.m.httpNotReady))
	mux.Handle("POST "+lbsapi.PathReport, l.whenCaughtUp(http.HandlerFunc(l.handleReport), l.m.rumReports.WithLabelValues("not_ready")))
	// Browsers (the Web SDK) ask from the app's origin: the answers are
	// public and carry no credentials, so any origin may read them. The
	// queries are simple GETs, so no preflight comes.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Access-Control-Allow-Origin"] = anyOrigin
		mux.ServeHTTP(w, r)
	})
}

// whenCaughtUp refuses requests with 503 and Retry-After until the member
// has caught up with the cluster (catchUp), counting them in refused.
func (l *LBS) whenCaughtUp(h http.Handler, refused prometheus.Counter) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := l.Ready(); err != nil {
			refused.Inc()
			w.Header().Set("Retry-After", "1")
			writeErr(w, http.StatusServiceUnavailable, err.Error()+"; ask another member")
			return
		}
		h.ServeHTTP(w, r)
	})
}

var anyOrigin = []string{"*"}

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
		// the comma-separated parts right to left, without splitting into
		// a slice (this runs for every query behind a proxy)
		for rest := xff[i]; ; {
			k := strings.LastIndexByte(rest, ',')
			a, err := netip.ParseAddr(strings.TrimSpace(rest[k+1:]))
			if err != nil {
				return ip // garbage: stop believing the chain
			}
			a = a.Unmap()
			if !l.isTrusted(a) {
				return a
			}
			ip = a
			if k < 0 {
				break
			}
			rest = rest[:k]
		}
	}
	return ip
}

func (l *LBS) isTrusted(ip netip.Addr) bool {
	for _, p := range l.live.Load().trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

const maxParam = 128

// sdkQuery is an SDK query's parameters.
type sdkQuery struct {
	appkey, env, sdk, platform string
	ts, sig                    string // the first of each, if repeated
}

// maxFastParams bounds the pairs parseSDKQuery reads itself; a longer query
// goes through net/url, so that its limit on the number of parameters
// applies exactly as before.
const maxFastParams = 32

// parseSDKQuery reads the SDK's parameters from a raw query as
// url.ParseQuery followed by sdkQueryFromValues would (pairs with a
// semicolon or a bad escape ignored, + and %XX unescaped), without building
// the map: FuzzParseSDKQuery holds the two to the same result.
func parseSDKQuery(raw string) (sdkQuery, error) {
	if strings.Count(raw, "&") >= maxFastParams {
		vs, _ := url.ParseQuery(raw)
		return sdkQueryFromValues(vs)
	}
	var q sdkQuery
	var seen [4]int // appkey, env, sdk, platform
	var tooLong [4]bool
	var tsSeen, sigSeen bool
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" || strings.IndexByte(pair, ';') >= 0 {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		var err error
		if k, err = queryUnescape(k); err != nil {
			continue
		}
		if v, err = queryUnescape(v); err != nil {
			continue
		}
		var i int
		var dst *string
		switch k {
		case "appkey":
			i, dst = 0, &q.appkey
		case "env":
			i, dst = 1, &q.env
		case "sdk":
			i, dst = 2, &q.sdk
		case "platform":
			i, dst = 3, &q.platform
		case "ts":
			if !tsSeen {
				q.ts, tsSeen = v, true
			}
			continue
		case "sig":
			if !sigSeen {
				q.sig, sigSeen = v, true
			}
			continue
		default:
			continue
		}
		if seen[i]++; seen[i] == 1 {
			*dst, tooLong[i] = v, len(v) > maxParam
		}
	}
	names := [4]string{"appkey", "env", "sdk", "platform"}
	for i, n := range seen {
		switch {
		case n > 1:
			return sdkQuery{}, errors.New(names[i] + ": given more than once")
		case tooLong[i]:
			return sdkQuery{}, errors.New(names[i] + ": too long")
		case i == 0 && q.appkey == "":
			return sdkQuery{}, errors.New("appkey: required")
		}
	}
	return q, nil
}

// queryUnescape is url.QueryUnescape without its copy when there is
// nothing to unescape.
func queryUnescape(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, nil
	}
	return url.QueryUnescape(s)
}

// sdkQueryFromValues reads and bounds the SDK's parameters.
func sdkQueryFromValues(q url.Values) (sdkQuery, error) {
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
	var s sdkQuery
	var err error
	if s.appkey, err = get("appkey"); err != nil {
		return sdkQuery{}, err
	}
	if s.appkey == "" {
		return sdkQuery{}, errors.New("appkey: required")
	}
	if s.env, err = get("env"); err != nil {
		return sdkQuery{}, err
	}
	if s.sdk, err = get("sdk"); err != nil {
		return sdkQuery{}, err
	}
	if s.platform, err = get("platform"); err != nil {
		return sdkQuery{}, err
	}
	s.ts, s.sig = q.Get("ts"), q.Get("sig")
	return s, nil
}

// answerBuf is one query's answer and its encoding, pooled: a query then
// allocates little besides what the selection itself needs.
type answerBuf struct {
	ans lbsapi.Answer
	out []byte
}

var answerBufs = sync.Pool{New: func() any {
	return &answerBuf{ans: lbsapi.Answer{Link: make([]lbsapi.Endpoint, 0, 8), WebLink: make([]lbsapi.Endpoint, 0, 8),
		TURN: make([]lbsapi.Endpoint, 0, 8)}, out: make([]byte, 0, 2048)}
}}

func (l *LBS) handleQuery(w http.ResponseWriter, r *http.Request) {
	q, err := parseSDKQuery(r.URL.RawQuery)
	if err != nil {
		l.m.httpBad.Inc()
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	snap := l.fsm.Current()
	if secret := snap.Engine.SigningSecret(q.appkey); secret != "" {
		n, perr := strconv.ParseInt(q.ts, 10, 64)
		if perr != nil || time.Since(time.Unix(n, 0)).Abs() > 5*time.Minute ||
			!hmac.Equal([]byte(q.sig), []byte(lbsapi.Sign(secret, q.appkey, q.env, q.sdk, q.platform, q.ts))) {
			l.m.httpSig.Inc()
			writeErr(w, http.StatusUnauthorized, "bad or missing request signature")
			return
		}
	}
	ip := l.clientIP(r)
	req := engine.Request{AppKey: q.appkey, Env: q.env, SDK: q.sdk, Platform: q.platform, Client: ip}
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
	ab := answerBufs.Get().(*answerBuf)
	defer answerBufs.Put(ab)
	ab.ans = lbsapi.Answer{AppKey: q.appkey, Rule: res.Rule, PolicyVersion: snap.State.Version, RaftIndex: snap.State.Index,
		TTL: int(res.TTL / time.Second), ClientIP: ip.String(), Country: req.Loc.Country,
		Link: ab.ans.Link[:0], LinkQUIC: ab.ans.LinkQUIC[:0], WebLink: ab.ans.WebLink[:0], TURN: ab.ans.TURN[:0]}
	ans := &ab.ans
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
		if ep.LinkQUIC != "" {
			e := base
			e.Host, e.Port = splitHostPort(ep.LinkQUIC)
			ans.LinkQUIC = append(ans.LinkQUIC, e)
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
	ab.out = appendAnswer(ab.out[:0], ans)
	h := w.Header()
	h["Content-Type"] = jsonType
	h["Cache-Control"] = noStore
	h["Content-Length"] = []string{strconv.Itoa(len(ab.out))}
	w.WriteHeader(http.StatusOK)
	w.Write(ab.out)
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
