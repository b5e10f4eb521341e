package lbs

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/longlink/longlink/geo"
	"github.com/longlink/longlink/lbs/internal/engine"
)

// dnsServer answers authoritatively for the configured zone on several
// SO_REUSEPORT UDP sockets (each read by a fixed number of workers, which
// bounds concurrency) and on TCP (bounded connections).
type dnsServer struct {
	l     *LBS
	zone  string
	udp   []net.PacketConn
	tcpLn net.Listener
	tcp   *dns.Server
	rrl   *rateLimiter
	wg    sync.WaitGroup
	once  sync.Once
}

func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

func newDNSServer(l *LBS) (*dnsServer, error) {
	c := l.cfg.DNS
	s := &dnsServer{l: l, zone: strings.ToLower(dns.Fqdn(c.Zone))}
	n := c.Sockets
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	lc := net.ListenConfig{Control: reusePort}
	// The TCP port is taken first: with port 0 the kernel then picks one no
	// TCP socket holds, and TCP ports are the scarce ones on a host busy with
	// outgoing connections (each holds an ephemeral port, which a UDP-first
	// pick kept running into). The UDP sockets share its number; with port 0
	// a number some UDP socket holds is given back and another one tried.
	var ln net.Listener
	for attempt := 0; ; attempt++ {
		var err error
		if ln, err = lc.Listen(context.Background(), "tcp", c.Listen); err != nil {
			return nil, fmt.Errorf("lbs: dns tcp: %w", err)
		}
		addr := ln.Addr().String()
		s.udp = nil
		for range n {
			var pc net.PacketConn
			if pc, err = lc.ListenPacket(context.Background(), "udp", addr); err != nil {
				break
			}
			s.udp = append(s.udp, pc)
		}
		if err == nil {
			break
		}
		ln.Close()
		s.closeSockets()
		if _, port, _ := net.SplitHostPort(c.Listen); port != "0" || attempt == 10 {
			return nil, fmt.Errorf("lbs: dns udp: %w", err)
		}
	}
	maxTCP := c.MaxTCP
	if maxTCP <= 0 {
		maxTCP = 256
	}
	s.tcpLn = &limitListener{Listener: ln, sem: make(chan struct{}, maxTCP)}
	if c.RateLimit >= 0 {
		rate := c.RateLimit
		if rate == 0 {
			rate = 200
		}
		burst := c.RateBurst
		if burst <= 0 {
			burst = 2 * rate
		}
		s.rrl = newRateLimiter(rate, burst, 0)
	}
	s.tcp = &dns.Server{Listener: s.tcpLn, Net: "tcp", MaxTCPQueries: 128, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
		IdleTimeout: func() time.Duration { return 10 * time.Second },
		Handler:     dns.HandlerFunc(s.serveTCP)}
	return s, nil
}

func (s *dnsServer) addr() net.Addr { return s.udp[0].LocalAddr() }

func (s *dnsServer) closeSockets() {
	for _, pc := range s.udp {
		pc.Close()
	}
}

func (s *dnsServer) start() {
	workers := s.l.cfg.DNS.Workers
	if workers <= 0 {
		workers = 4
	}
	for _, pc := range s.udp {
		for range workers {
			s.wg.Add(1)
			go s.udpLoop(pc)
		}
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.tcp.ActivateAndServe() }()
}

func (s *dnsServer) stop() {
	s.once.Do(func() {
		s.closeSockets()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.tcp.ShutdownContext(ctx)
		s.tcpLn.Close()
	})
	s.wg.Wait()
}

func isClosed(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "use of closed") || err == net.ErrClosed)
}

func (s *dnsServer) serveTCP(w dns.ResponseWriter, req *dns.Msg) {
	client := netip.Addr{}
	if ta, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		client = ta.AddrPort().Addr().Unmap()
	}
	q := queryOf(req)
	resp := s.answer(&q, client, false)
	if resp == nil {
		w.Close()
		return
	}
	w.WriteMsg(resp)
}

// handle turns one query's bytes into a response, or nil to drop it.
func (s *dnsServer) handle(b []byte, client netip.Addr, udp bool) *dns.Msg {
	m := s.l.m
	if udp && s.rrl != nil && !s.rrl.allow(client) {
		m.dnsRateLimited.Inc()
		return nil
	}
	var q dnsRequest
	if !parseQuery(b, &q) {
		req := new(dns.Msg)
		if err := req.Unpack(b); err != nil {
			if len(b) < 12 || b[2]&0x80 != 0 { // too short for a header, or a response
				m.dnsMalformed.Inc()
				return nil
			}
			resp := new(dns.Msg)
			resp.Id = uint16(b[0])<<8 | uint16(b[1])
			resp.Response = true
			resp.Rcode = dns.RcodeFormatError
			m.dnsFormErr.Inc()
			return resp
		}
		q = queryOf(req)
	}
	return s.answer(&q, client, udp)
}

// answer answers a decoded query, or returns nil to drop it.
func (s *dnsServer) answer(q *dnsRequest, client netip.Addr, udp bool) *dns.Msg {
	m := s.l.m
	if q.response {
		m.dnsMalformed.Inc()
		return nil
	}
	size := 512
	if q.edns {
		size = max(512, min(int(q.udpSize), 4096))
	}
	if !udp {
		size = 65535
	}
	if s.l.Ready() != nil {
		// Not authoritative for anything yet: resolvers try another
		// server, where an NXDOMAIN from a stale state would be cached.
		m.dnsServFail.Inc()
		return servFail(q)
	}
	asker := client
	if q.ecs.IsValid() {
		asker = q.ecs.Addr()
	}
	resp := s.l.dnsAnswer(q, asker, size)
	switch resp.Rcode {
	case dns.RcodeSuccess:
		m.dnsNoErr.Inc()
	case dns.RcodeNameError:
		m.dnsNX.Inc()
	case dns.RcodeFormatError:
		m.dnsFormErr.Inc()
	default:
		m.dnsRefused.Inc()
	}
	if resp.Truncated {
		m.dnsTruncated.Inc()
	}
	return resp
}

// servFail answers q with SERVFAIL, not authoritative.
func servFail(q *dnsRequest) *dns.Msg {
	resp := new(dns.Msg)
	resp.Id = q.id
	resp.Response = true
	resp.Opcode = q.opcode
	resp.RecursionDesired, resp.CheckingDisabled = q.rd, q.cd
	if q.questions > 0 {
		resp.Question = []dns.Question{q.q}
	}
	resp.Rcode = dns.RcodeServerFailure
	if q.edns {
		resp.Extra = append(resp.Extra, optRR(netip.Prefix{}, 0))
	}
	return resp
}

// dnsAnswer builds the authoritative answer for req as if asked by client
// (the address of req's EDNS Client Subnet when it carries one).
func (l *LBS) dnsAnswer(req *dnsRequest, client netip.Addr, size int) *dns.Msg {
	resp := new(dns.Msg)
	resp.Id = req.id
	resp.Response = true
	resp.Opcode = req.opcode
	if req.opcode == dns.OpcodeQuery {
		resp.RecursionDesired, resp.CheckingDisabled = req.rd, req.cd
	}
	if req.questions > 0 {
		resp.Question = []dns.Question{req.q}
	}
	resp.Authoritative = true
	ecs := req.ecs
	if req.edns && req.ednsVersion != 0 {
		resp.Rcode = dns.RcodeBadVers
		resp.Extra = append(resp.Extra, optRR(netip.Prefix{}, 0))
		return resp
	}
	if req.questions != 1 || req.opcode != dns.OpcodeQuery {
		if req.opcode != dns.OpcodeQuery {
			resp.Rcode = dns.RcodeNotImplemented
		} else {
			resp.Rcode = dns.RcodeFormatError
		}
		return resp
	}
	zone := l.zone
	q := req.q
	name := lowerASCII(q.Name)
	var loc geo.Location
	scope := -1
	defer func() {
		if req.edns {
			resp.Extra = append(resp.Extra, optRR(ecs, scope))
		}
		// Truncate computes the packed length, which is costly; skip it when
		// a cheap upper bound already fits
		if size > 0 && estimateLen(resp) > size {
			resp.Truncate(size)
		}
	}()
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		resp.Rcode = dns.RcodeRefused
		return resp
	}
	if name != zone && !strings.HasSuffix(name, "."+zone) {
		resp.Rcode = dns.RcodeRefused
		return resp
	}
	snap := l.fsm.Current()
	ttl := uint32(snap.Engine.TTL() / time.Second)
	if d := l.cfg.DNS.TTL.D(); d > 0 {
		ttl = uint32(d / time.Second)
	}
	ttl = min(ttl, 60)
	soa := func() *dns.SOA {
		return &dns.SOA{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
			Ns: "ns." + zone, Mbox: "hostmaster." + zone, Serial: uint32(snap.State.Version), Refresh: 3600, Retry: 600, Expire: 86400, Minttl: ttl}
	}
	nodata := func() *dns.Msg { resp.Ns = append(resp.Ns, soa()); return resp }
	if name == zone {
		switch q.Qtype {
		case dns.TypeSOA:
			resp.Answer = append(resp.Answer, soa())
		case dns.TypeNS:
			resp.Answer = append(resp.Answer, &dns.NS{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: ttl}, Ns: "ns." + zone})
		default:
			return nodata()
		}
		return resp
	}
	rel := name[:len(name)-len(zone)-1]
	var lb [4]string
	labels := splitLabels(rel, lb[:0])
	// <id>.ep.<zone>: one entry point's address
	if len(labels) == 2 && labels[1] == "ep" {
		c, ok := snap.Engine.EntryPoint(labels[0])
		if !ok {
			resp.Rcode = dns.RcodeNameError
			return nodata()
		}
		var recs addrRecords
		if rr := recs.rr(name, c.Addr, q.Qtype, ttl); rr != nil {
			resp.Answer = append(resp.Answer, rr)
			return resp
		}
		return nodata()
	}
	// <proto>.<appkey>.<zone> or _<proto>._tcp.<appkey>.<zone>
	var proto, appkey string
	switch {
	case len(labels) == 2:
		proto, appkey = labels[0], labels[1]
	case len(labels) == 3 && strings.HasPrefix(labels[0], "_") && (labels[1] == "_tcp" || labels[1] == "_udp"):
		proto, appkey = strings.TrimPrefix(labels[0], "_"), labels[2]
	default:
		resp.Rcode = dns.RcodeNameError
		return nodata()
	}
	if proto != "link" && proto != "turn" && proto != "weblink" || !snap.Engine.HasApp(appkey) {
		resp.Rcode = dns.RcodeNameError
		return nodata()
	}
	if ecs.IsValid() || client.IsValid() {
		loc = l.geo.Lookup(client)
		scope = 0
		if ecs.IsValid() && loc.Source != "none" && loc.Prefix.IsValid() {
			scope = min(loc.Prefix.Bits(), client.BitLen())
		}
	}
	sel := engine.Request{AppKey: appkey, Client: client, Loc: loc}
	l.measured(snap, &sel)
	res, err := snap.Engine.Select(&sel)
	if err != nil {
		resp.Rcode = dns.RcodeNameError
		return nodata()
	}
	resp.Answer = make([]dns.RR, 0, len(res.Candidates)+1)
	recs := addrRecords{n: len(res.Candidates)}
	for i, c := range res.Candidates {
		hostport := c.EP.Link
		switch proto {
		case "turn":
			hostport = c.EP.TURN
		case "weblink":
			hostport = ""
			if u := c.EP.WebLink; u != "" {
				hostport = weblinkHostPort(u)
			}
		}
		if hostport == "" {
			continue
		}
		host, port := splitHostPort(hostport)
		a, aerr := netip.ParseAddr(strings.Trim(host, "[]"))
		switch q.Qtype {
		case dns.TypeA, dns.TypeAAAA, dns.TypeANY:
			if aerr == nil {
				if rr := recs.rr(name, a, q.Qtype, ttl); rr != nil {
					resp.Answer = append(resp.Answer, rr)
				}
			}
		case dns.TypeSRV:
			target := c.EP.ID + ".ep." + zone
			resp.Answer = append(resp.Answer, &dns.SRV{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: ttl},
				Priority: uint16(i), Weight: uint16(min(c.Weight(), 65535)), Port: uint16(port), Target: target})
			if aerr == nil {
				if rr := recs.rr(target, a, dns.TypeANY, ttl); rr != nil {
					resp.Extra = append(resp.Extra, rr)
				}
			}
		case dns.TypeTXT:
			resp.Answer = append(resp.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: ttl},
				Txt: []string{"id=" + c.EP.ID, "site=" + c.EP.Site, "addr=" + hostport}})
		}
	}
	if q.Qtype == dns.TypeTXT {
		resp.Answer = append(resp.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: ttl},
			Txt: []string{"policy_version=" + strconv.FormatUint(snap.State.Version, 10), "raft_index=" + strconv.FormatUint(snap.State.Index, 10), "rule=" + res.Rule}})
	}
	if len(resp.Answer) == 0 {
		return nodata()
	}
	return resp
}

func weblinkHostPort(u string) string {
	rest := u
	port := "80"
	if strings.HasPrefix(rest, "https://") {
		rest, port = rest[len("https://"):], "443"
	} else {
		rest = strings.TrimPrefix(rest, "http://")
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	if _, _, err := net.SplitHostPort(rest); err == nil {
		return rest
	}
	return net.JoinHostPort(strings.Trim(rest, "[]"), port)
}

// addrRecords makes an answer's A and AAAA records: they share three
// allocations (sized for n records) instead of taking two each.
type addrRecords struct {
	n    int
	a    []dns.A
	aaaa []dns.AAAA
	ip   []byte
}

// rr is a's record for qtype (A, AAAA or ANY), or nil if a does not fit it.
// Records handed out earlier stay valid when a slice grows: they keep
// pointing into the array they were made in.
func (r *addrRecords) rr(name string, a netip.Addr, qtype uint16, ttl uint32) dns.RR {
	if !a.IsValid() {
		return nil
	}
	a = a.Unmap()
	hdr := dns.RR_Header{Name: name, Class: dns.ClassINET, Ttl: ttl}
	n := max(r.n, 1)
	if r.ip == nil {
		r.ip = make([]byte, 0, 16*n)
	}
	switch {
	case a.Is4() && (qtype == dns.TypeA || qtype == dns.TypeANY):
		b := a.As4()
		r.ip = append(r.ip, b[:]...)
		if r.a == nil {
			r.a = make([]dns.A, 0, n)
		}
		hdr.Rrtype = dns.TypeA
		r.a = append(r.a, dns.A{Hdr: hdr, A: r.ip[len(r.ip)-4 : len(r.ip) : len(r.ip)]})
		return &r.a[len(r.a)-1]
	case a.Is6() && (qtype == dns.TypeAAAA || qtype == dns.TypeANY):
		b := a.As16()
		r.ip = append(r.ip, b[:]...)
		if r.aaaa == nil {
			r.aaaa = make([]dns.AAAA, 0, n)
		}
		hdr.Rrtype = dns.TypeAAAA
		r.aaaa = append(r.aaaa, dns.AAAA{Hdr: hdr, AAAA: r.ip[len(r.ip)-16 : len(r.ip) : len(r.ip)]})
		return &r.aaaa[len(r.aaaa)-1]
	}
	return nil
}

// optRR is an answer's OPT record, with the query's Client Subnet (if
// valid) and the scope the answer holds for (if > 0); its parts share one
// allocation.
func optRR(ecs netip.Prefix, scope int) *dns.OPT {
	e := new(struct {
		opt  dns.OPT
		sub  dns.EDNS0_SUBNET
		addr [16]byte
		opts [1]dns.EDNS0
	})
	e.opt.Hdr = dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}
	e.opt.SetUDPSize(1232)
	if ecs.IsValid() {
		a := ecs.Addr()
		e.sub = dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(ecs.Bits())}
		if a.Is4() {
			b := a.As4()
			e.sub.Address = append(e.addr[:0], b[:]...)
		} else {
			b := a.As16()
			e.sub.Family, e.sub.Address = 2, append(e.addr[:0], b[:]...)
		}
		if scope > 0 {
			e.sub.SourceScope = uint8(scope)
		}
		e.opts[0] = &e.sub
		e.opt.Option = e.opts[:]
	}
	return &e.opt
}

// limitListener bounds concurrent TCP connections.
type limitListener struct {
	net.Listener
	sem chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// lowerASCII lower-cases DNS names without allocating when they already are.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// splitLabels splits a relative name into at most 4 labels (more are
// reported as 5 so that no pattern matches).
func splitLabels(rel string, out []string) []string {
	for {
		i := strings.IndexByte(rel, '.')
		if i < 0 {
			return append(out, rel)
		}
		if len(out) == 3 {
			return append(out, rel, "")
		}
		out = append(out, rel[:i])
		rel = rel[i+1:]
	}
}

// estimateLen is an upper bound of the packed length (no compression).
func estimateLen(m *dns.Msg) int {
	n := 12
	for _, q := range m.Question {
		n += len(q.Name) + 2 + 4
	}
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			n += len(rr.Header().Name) + 2 + 10
			switch r := rr.(type) {
			case *dns.A:
				n += 4
			case *dns.AAAA:
				n += 16
			case *dns.SRV:
				n += 6 + len(r.Target) + 2
			case *dns.TXT:
				for _, t := range r.Txt {
					n += len(t) + 1
				}
			case *dns.OPT:
				n += 64
			case *dns.SOA:
				n += len(r.Ns) + len(r.Mbox) + 4 + 20
			case *dns.NS:
				n += len(r.Ns) + 2
			default:
				n += 1 << 16
			}
		}
	}
	return n
}
