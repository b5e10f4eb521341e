package sdk

import (
	"context"
	"net"
	"strconv"

	"github.com/longlink/longlink/core/link/linkquic"
	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/lbs/lbsclient"
)

// LBSResolver adapts the LBS client to Config.Resolver: each connection
// attempt asks it for the Link entry points (best first, the app's fallback
// last). The LBS client answers from its persisted cache at once and refreshes
// in the background, and returns its configured default link when no LBS
// answers, so reconnects never wait on the LBS.
func LBSResolver(c *lbsclient.Client) func(ctx context.Context) ([]string, error) {
	return func(ctx context.Context) ([]string, error) {
		a, err := c.Resolve(ctx)
		if err != nil {
			return nil, err
		}
		if a.Source == "default" {
			// No LBS answered and nothing was cached: the default link is
			// all there is, and the SDK reports both failures if it fails.
			err = lbsclient.ErrLBSUnreachable
		}
		return candidates(a), err
	}
}

// candidates lists an answer's Link addresses in its order, each entry
// point's Link over QUIC address ("quic://host:port") right before its TCP
// address: the race gives QUIC a head start (Config.QUICHeadStart) and TCP
// wins where UDP is blocked. QUIC addresses of entry points without a TCP
// one come last.
func candidates(a *lbsapi.Answer) []string {
	hp := func(ep lbsapi.Endpoint) (string, bool) {
		if ep.Host == "" || ep.Port <= 0 {
			return "", false
		}
		return net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port)), true
	}
	quic := map[string]string{}
	var quicOrder []string
	for _, ep := range a.LinkQUIC {
		if addr, ok := hp(ep); ok {
			if _, dup := quic[ep.ID]; !dup {
				quicOrder = append(quicOrder, ep.ID)
			}
			quic[ep.ID] = linkquic.Scheme + addr
		}
	}
	addrs := make([]string, 0, len(a.Link)+len(a.LinkQUIC))
	for _, ep := range a.Link {
		addr, ok := hp(ep)
		if !ok {
			continue
		}
		if q, ok := quic[ep.ID]; ok {
			addrs = append(addrs, q)
			delete(quic, ep.ID)
		}
		addrs = append(addrs, addr)
	}
	for _, id := range quicOrder {
		if q, ok := quic[id]; ok {
			addrs = append(addrs, q)
		}
	}
	return addrs
}
