// Package transport carries tunnel streams and datagrams between two Longlink
// nodes (edge, relay, core egress). A Transport dials peers and listens for
// them; a Conn multiplexes reliable streams (one per TCP-like client flow) and
// unreliable datagrams (UDP flows) over one authenticated, encrypted session.
//
// Implementations: QUIC (quic-go, mutual TLS from the cluster CA, RFC 9221
// datagrams), KCP (kcp-go + smux over an AEAD packet layer keyed by the
// cluster key) and Mem (in-process, for unit tests).
package transport

import (
	"context"
	"errors"
	"io"
	"net"
)

// Transport dials and accepts peer connections.
type Transport interface {
	// Name is the transport's config name: "quic", "kcp" or "mem".
	Name() string
	// Dial opens an authenticated connection to the peer at addr.
	Dial(ctx context.Context, addr string) (Conn, error)
	// Listen binds addr and accepts authenticated peers.
	Listen(addr string) (Listener, error)
}

// Listener accepts peer connections.
type Listener interface {
	Accept(ctx context.Context) (Conn, error)
	Addr() net.Addr
	Close() error
}

// Conn is one authenticated session with a peer node.
type Conn interface {
	// OpenStream opens a new reliable stream to the peer.
	OpenStream(ctx context.Context) (Stream, error)
	// AcceptStream waits for a stream opened by the peer.
	AcceptStream(ctx context.Context) (Stream, error)
	// SendDatagram sends one unreliable datagram (at most MaxDatagramSize bytes).
	SendDatagram(b []byte) error
	// ReceiveDatagram waits for the next datagram.
	ReceiveDatagram(ctx context.Context) ([]byte, error)
	// MaxDatagramSize is the largest datagram SendDatagram accepts.
	MaxDatagramSize() int
	// Done is closed when the connection is gone.
	Done() <-chan struct{}
	LocalAddr() net.Addr
	RemoteAddr() net.Addr
	// Close tears the session down; every stream on it fails.
	Close() error
}

// Stream is one reliable, ordered byte stream. Close ends it in both directions.
type Stream interface {
	io.ReadWriteCloser
}

// ErrClosed is returned by operations on a closed conn or listener.
var ErrClosed = errors.New("transport: closed")

// ErrDatagramTooLarge is returned when a datagram does not fit.
var ErrDatagramTooLarge = errors.New("transport: datagram too large")
