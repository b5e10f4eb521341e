//go:build !linux

package gateway

import (
	"net"
	"time"
)

// poller is Linux-only; elsewhere every connection keeps its reader.
type poller struct{}

func newPoller() (*poller, error)       { return nil, nil }
func (p *poller) run()                  {}
func (p *poller) sweep(time.Duration)   {}
func (p *poller) watch(*linkConn) error { return nil }
func (p *poller) forget(*linkConn)      {}
func (p *poller) close()                {}
func (p *poller) parked() []*linkConn   { return nil }
func socketFD(net.Conn) int32           { return -1 }
func readable(net.Conn) bool            { return true }
func peerClosed(net.Conn) bool          { return false }
