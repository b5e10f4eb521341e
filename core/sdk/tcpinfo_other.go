//go:build !linux

package sdk

import (
	"net"
	"time"
)

// tcpInfo is not available here: no nudges, no RTT memory.
func tcpInfo(net.Conn) func() (time.Duration, int, bool) { return nil }
