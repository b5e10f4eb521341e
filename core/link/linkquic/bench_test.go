package linkquic

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
)

// BenchmarkRoundTrip: one small Link frame and its answer over loopback,
// Link over TCP against Link over QUIC with and without copies of small
// packets; cpu-µs/op is the process's CPU (user + system, both ends) per
// round trip, what a loaded edge and client pay for the transport.
func BenchmarkRoundTrip(b *testing.B) {
	key, err := link.GenerateKey("k1")
	if err != nil {
		b.Fatal(err)
	}
	ring := link.NewKeyRing(key)
	echo := func(ln net.Listener) {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				c, err := link.Server(ctx, nc, ring, link.Limits{})
				cancel()
				if err != nil {
					return
				}
				for {
					f, err := c.ReadFrame()
					if err != nil {
						return
					}
					f.Flags |= link.FlagResponse
					if c.WriteFrame(f) != nil {
						return
					}
				}
			}()
		}
	}
	for _, tc := range []struct {
		name   string
		copies int
	}{{"tcp", 0}, {"quic", 0}, {"quic_no_copies", -1}} {
		b.Run(tc.name, func(b *testing.B) {
			var ln net.Listener
			var dial func(ctx context.Context, addr string) (net.Conn, error)
			if tc.name == "tcp" {
				ln, err = net.Listen("tcp", "127.0.0.1:0")
				var d net.Dialer
				dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
			} else {
				ln, err = Listen("127.0.0.1:0", nil, Options{DuplicateMax: tc.copies})
				dial = NewDialer(Options{DuplicateMax: tc.copies}).Dial
			}
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go echo(ln)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			nc, err := dial(ctx, ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			c, err := link.Client(ctx, nc, key.ID, key.Public, link.Limits{})
			if err != nil {
				b.Fatal(err)
			}
			body := make([]byte, 300) // a text message's request
			cpu := func() time.Duration {
				var ru syscall.Rusage
				_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
				return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			}
			b.ResetTimer()
			start := cpu()
			for i := range b.N {
				if err := c.WriteFrame(link.Frame{Op: imapi.OpHeartbeat, Seq: uint32(i + 1), Body: body}); err != nil {
					b.Fatal(err)
				}
				if _, err := c.ReadFrame(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpu()-start)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
		})
	}
}
