package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// client is a lean Socket.IO-over-WebSocket client: enough of RFC 6455 and
// the two protocols for the benchmark, so that the load generator is not
// what limits the measurement.
type client struct {
	conn net.Conn
	br   *bufio.Reader
	wmu  sync.Mutex
	wbuf []byte
}

// source is a random loopback address of 127.0.0.0/8 that this load
// process dials from, so that runs do not exhaust the ephemeral ports of one
// address pair (connections closed by the client linger in TIME_WAIT).
var source = func() *net.TCPAddr {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return &net.TCPAddr{IP: net.IPv4(127, 1, b[0], b[1]|1)}
}()

func dialClient(addr string) (*client, error) {
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: source}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	var k [16]byte
	_, _ = rand.Read(k[:])
	req := "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: " + addr +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(k[:]) +
		"\r\nSec-WebSocket-Version: 13\r\n\r\n"
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := conn.Write([]byte(req)); err != nil {
		conn.Close()
		return nil, err
	}
	c := &client{conn: conn, br: bufio.NewReaderSize(conn, 1024)}
	status, err := c.br.ReadString('\n')
	if err != nil || !strings.Contains(status, " 101 ") {
		conn.Close()
		return nil, fmt.Errorf("handshake: %q %v", status, err)
	}
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			conn.Close()
			return nil, err
		}
		if l == "\r\n" {
			break
		}
	}
	open, err := c.read()
	if err != nil || !strings.HasPrefix(open, "0{") {
		conn.Close()
		return nil, fmt.Errorf("open packet %q: %v", open, err)
	}
	if err := c.write("40"); err != nil {
		conn.Close()
		return nil, err
	}
	for {
		m, err := c.read()
		if err != nil {
			conn.Close()
			return nil, err
		}
		if strings.HasPrefix(m, "40") {
			break
		}
	}
	_ = conn.SetDeadline(time.Time{})
	return c, nil
}

// read returns the next text message, answering pings on the way.
func (c *client) read() (string, error) {
	for {
		var h [2]byte
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			return "", err
		}
		n := int(h[1] & 0x7F)
		switch n {
		case 126:
			var e [2]byte
			if _, err := io.ReadFull(c.br, e[:]); err != nil {
				return "", err
			}
			n = int(binary.BigEndian.Uint16(e[:]))
		case 127:
			var e [8]byte
			if _, err := io.ReadFull(c.br, e[:]); err != nil {
				return "", err
			}
			n = int(binary.BigEndian.Uint64(e[:]))
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(c.br, p); err != nil {
			return "", err
		}
		switch h[0] & 0x0F {
		case 0x8:
			return "", errors.New("closed by server")
		case 0x9, 0xA:
			continue
		}
		if string(p) == "2" {
			if err := c.write("3"); err != nil {
				return "", err
			}
			continue
		}
		return string(p), nil
	}
}

func (c *client) write(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b := c.wbuf[:0]
	b = append(b, 0x81)
	switch n := len(s); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	b = append(b, mask[:]...)
	for i := 0; i < len(s); i++ {
		b = append(b, s[i]^mask[i&3])
	}
	c.wbuf = b
	_, err := c.conn.Write(b)
	return err
}

func runLoad(addr string, idle, busy int) error {
	total := idle + busy
	clients := make([]*client, total)
	var failed atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range clients {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			var c *client
			var err error
			for try := 0; try < 5; try++ {
				if c, err = dialClient(addr); err == nil {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if err != nil {
				failed.Add(1)
				fmt.Fprintln(os.Stderr, "dial:", err)
				return
			}
			clients[i] = c
		}(i)
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d of %d connections failed", n, total)
	}
	var dead atomic.Int64
	// Idle connections only answer pings.
	for _, c := range clients[:idle] {
		go func(c *client) {
			for {
				if _, err := c.read(); err != nil {
					dead.Add(1)
					return
				}
			}
		}(c)
	}
	fmt.Println("READY")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "GO":
			ms, _ := strconv.Atoi(f[1])
			n, secs, p50, p99, err := echo(clients[idle:], time.Duration(ms)*time.Millisecond)
			if err != nil {
				return err
			}
			fmt.Printf("STATS %d %.3f %.3f %.3f\n", n, secs, p50, p99)
		case "CHECK":
			fmt.Printf("ALIVE %d of %d idle connections alive\n", int64(idle)-dead.Load(), idle)
		}
	}
	return nil
}

// echo runs a closed loop on each busy connection: emit "echo" with an ack
// id, wait for the ack, repeat.
func echo(busy []*client, d time.Duration) (n int64, secs, p50, p99 float64, err error) {
	var mu sync.Mutex
	var all []time.Duration
	var errOnce sync.Once
	var firstErr error
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for _, c := range busy {
		wg.Add(1)
		go func(c *client) {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			for id := 1; time.Now().Before(deadline); id++ {
				t0 := time.Now()
				if err := c.write("42" + strconv.Itoa(id) + `["echo","hello, weblink"]`); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				want := "43" + strconv.Itoa(id) + `["hello, weblink"]`
				for {
					m, err := c.read()
					if err != nil {
						errOnce.Do(func() { firstErr = err })
						return
					}
					if m == want {
						break
					}
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return 0, 0, 0, 0, firstErr
	}
	if len(all) == 0 {
		return 0, 0, 0, 0, errors.New("no echo completed")
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	q := func(f float64) float64 { return float64(all[int(f*float64(len(all)-1))]) / 1e6 }
	return int64(len(all)), elapsed.Seconds(), q(0.50), q(0.99), nil
}
