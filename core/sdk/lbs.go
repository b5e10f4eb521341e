package sdk

import (
	"context"
	"net"
	"strconv"

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
		addrs := make([]string, 0, len(a.Link))
		for _, ep := range a.Link {
			if ep.Host == "" || ep.Port == 0 {
				continue
			}
			addrs = append(addrs, net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port)))
		}
		return addrs, err
	}
}
