//go:build !linux

package server

import (
	"errors"
	"net"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
)

// parker is Linux-only (epoll); elsewhere every connection keeps its reader.
type parker struct{}

func newParker(prometheus.Gauge) (*parker, error) { return nil, errors.New("parking needs epoll") }
func parkable(net.Conn) syscall.Conn              { return nil }
func (p *parker) park(*wsConn) bool               { return false }
func (p *parker) unpark(*wsConn) bool             { return false }
func (p *parker) close()                          {}
