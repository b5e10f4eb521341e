package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"time"

	"github.com/longlink/longlink/pkg/pki"
)

// measurement is what one client run reports to the orchestrator (JSON on
// stdout).
type measurement struct {
	ConnectMS     []float64 `json:"connect_ms"`
	ConnectFailed int       `json:"connect_failed"`
	MessageMS     []float64 `json:"message_ms"`
	MessageFailed int       `json:"message_failed"`
	// FirstMsgMS: a fresh client's connect, login and first message until
	// the core's durable ack (what a user waits for before "sent").
	FirstMsgMS     []float64 `json:"first_msg_ms"`
	FirstMsgFailed int       `json:"first_msg_failed"`
	BulkBytes      int64     `json:"bulk_bytes"`
	BulkSeconds    float64   `json:"bulk_seconds"`
	BulkFirstByteS float64   `json:"bulk_first_byte_s"`
	// MessageAt, MessageUpMS and MessageNth go with MessageMS, one per
	// message (the sdkclient role): when it was sent (Unix ms), the time
	// from Send to the service's stamp on the message (its ack's Time;
	// every node of the world runs on this host's clock, to the
	// millisecond), and its index on its connection (0: the first after
	// the login).
	MessageAt   []int64   `json:"message_at,omitempty"`
	MessageUpMS []float64 `json:"message_up_ms,omitempty"`
	MessageNth  []int     `json:"message_nth,omitempty"`
}

type clientPlan struct {
	target      string
	pkiDir      string
	connects    int
	concurrency int
	msgConns    int
	msgFor      time.Duration
	bulkFor     time.Duration
}

// runClient measures connect-and-login times, message round trips and a bulk
// download against target (the core directly, or an edge), each bounded.
func runClient(ctx context.Context, p clientPlan) error {
	ca, err := pki.LoadCA(p.pkiDir)
	if err != nil {
		return err
	}
	conf := &tls.Config{RootCAs: ca.Pool(), ServerName: "core", MinVersion: tls.VersionTLS13,
		ClientSessionCache: nil} // every login is a full handshake, as for a new app start
	var m measurement

	// Connect and login: TCP connect, TLS 1.3 handshake, login request and
	// its answer.
	var mu sync.Mutex
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	for range p.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				d, err := connectLogin(ctx, p.target, conf)
				mu.Lock()
				if err != nil {
					m.ConnectFailed++
				} else {
					m.ConnectMS = append(m.ConnectMS, ms(d))
				}
				mu.Unlock()
			}
		}()
	}
	for range p.connects {
		select {
		case jobs <- struct{}{}:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()

	// Message round trips on logged-in connections, at a human pace.
	deadline := time.Now().Add(p.msgFor)
	for i := range p.msgConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _, err := login(ctx, p.target, conf)
			if err != nil {
				mu.Lock()
				m.MessageFailed++
				mu.Unlock()
				return
			}
			defer c.Close()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			msg := make([]byte, 200)
			buf := make([]byte, 512)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				c.SetDeadline(time.Now().Add(15 * time.Second))
				start := time.Now()
				if err := writeFrame(c, frameMessage, msg); err != nil {
					mu.Lock()
					m.MessageFailed++
					mu.Unlock()
					return
				}
				typ, _, err := readFrame(c, buf)
				if err != nil || typ != frameMessageOK {
					mu.Lock()
					m.MessageFailed++
					mu.Unlock()
					return
				}
				d := time.Since(start)
				mu.Lock()
				m.MessageMS = append(m.MessageMS, ms(d))
				mu.Unlock()
				time.Sleep(time.Duration(20+rng.IntN(60)) * time.Millisecond)
			}
		}()
	}
	wg.Wait()

	// Bulk download for a fixed time, slow start included, as a user
	// fetching a large file would see it.
	if p.bulkFor > 0 {
		c, _, err := login(ctx, p.target, conf)
		if err == nil {
			start := time.Now()
			c.SetDeadline(start.Add(p.bulkFor))
			if err := writeFrame(c, frameBulk, nil); err == nil {
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 && m.BulkBytes == 0 {
						m.BulkFirstByteS = time.Since(start).Seconds()
					}
					m.BulkBytes += int64(n)
					if err != nil {
						break
					}
				}
			}
			m.BulkSeconds = time.Since(start).Seconds()
			c.Close()
		}
	}
	return json.NewEncoder(os.Stdout).Encode(m)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func connectLogin(ctx context.Context, target string, conf *tls.Config) (time.Duration, error) {
	c, d, err := login(ctx, target, conf)
	if err != nil {
		return 0, err
	}
	c.Close()
	return d, nil
}

// login connects, completes the TLS handshake and logs in; it returns the
// connection and the time all of that took.
func login(ctx context.Context, target string, conf *tls.Config) (*tls.Conn, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := time.Now()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, 0, err
	}
	c := tls.Client(raw, conf)
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	if err := c.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, 0, fmt.Errorf("tls: %w", err)
	}
	if err := writeFrame(c, frameLogin, []byte(`{"app":"bench","account":"u1","token":"x"}`)); err != nil {
		c.Close()
		return nil, 0, err
	}
	typ, _, err := readFrame(c, make([]byte, 512))
	if err != nil || typ != frameLoginOK {
		c.Close()
		return nil, 0, fmt.Errorf("login: %v (frame %q)", err, typ)
	}
	el := time.Since(start)
	c.SetDeadline(time.Time{})
	return c, el, nil
}
