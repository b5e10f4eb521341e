package callsvc

import (
	"context"
	"net/netip"
	"sort"

	"github.com/longlink/longlink/core/imapi"
)

// Locator picks the TURN sites nearest to a client, best first. The LBS
// will provide one fed by its geo data and node health; until then the
// configured sites and their client networks decide.
type Locator interface {
	Nearest(ctx context.Context, appkey, clientIP string, n int) []imapi.TurnServer
}

// staticLocator orders the configured sites: those whose client networks
// contain the client first (longest prefix first), then the rest in
// configured order.
type staticLocator struct {
	sites []site
}

type site struct {
	server imapi.TurnServer
	cidrs  []netip.Prefix
}

func newStaticLocator(servers []ServerConfig) *staticLocator {
	l := &staticLocator{}
	for _, s := range servers {
		st := site{server: imapi.TurnServer{Site: s.Site, URLs: append([]string(nil), s.URLs...)}}
		for _, c := range s.ClientCIDRs {
			if p, err := netip.ParsePrefix(c); err == nil {
				st.cidrs = append(st.cidrs, p.Masked())
			}
		}
		l.sites = append(l.sites, st)
	}
	return l
}

func (l *staticLocator) Nearest(_ context.Context, _, clientIP string, n int) []imapi.TurnServer {
	ip, err := netip.ParseAddr(clientIP)
	if err == nil {
		ip = ip.Unmap()
	}
	type ranked struct {
		i    int
		bits int // longest matching prefix, -1 when none
	}
	rs := make([]ranked, len(l.sites))
	for i, s := range l.sites {
		rs[i] = ranked{i: i, bits: -1}
		if err != nil {
			continue
		}
		for _, p := range s.cidrs {
			if p.Contains(ip) && p.Bits() > rs[i].bits {
				rs[i].bits = p.Bits()
			}
		}
	}
	sort.SliceStable(rs, func(a, b int) bool { return rs[a].bits > rs[b].bits })
	out := make([]imapi.TurnServer, 0, min(n, len(rs)))
	for _, r := range rs[:min(n, len(rs))] {
		s := l.sites[r.i].server
		s.URLs = append([]string(nil), s.URLs...)
		out = append(out, s)
	}
	return out
}
