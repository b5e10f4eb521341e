package wan

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/tools/wanemu/wan/internal/netns"
)

// startWorld starts a world for an integration test, or skips the test with
// the reason when the host can't run one.
func startWorld(t *testing.T, yaml string) *World {
	t.Helper()
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	if err := Unsupported(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	cfg := Default()
	if err := config.Decode("world.yaml", []byte(yaml), &cfg); err != nil {
		t.Fatal(err)
	}
	w, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		names, _ := netns.List()
		for _, n := range w.Nodes() {
			if slices.Contains(names, w.Namespace(n)) {
				t.Errorf("namespace %s left behind", w.Namespace(n))
			}
		}
	})
	return w
}

// listenIn and dialIn create sockets inside a node's namespace.
func listenIn(t *testing.T, w *World, node, network, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := w.Do(node, func() (err error) { ln, err = net.Listen(network, addr); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func dialIn(w *World, node, network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := w.Do(node, func() (err error) { c, err = net.DialTimeout(network, addr, timeout); return })
	return c, err
}

const twoNodes = `
name: itest
sysctl: {net.ipv4.tcp_congestion_control: bbr}
nodes: [{name: a, sysctl: {net.ipv4.tcp_congestion_control: reno}}, {name: b, rto_min: 20ms}]
links:
  - {a: a, b: b, both: {delay: 25ms, loss: 0.01}}
`

// TestWorldLossyPath builds the two-namespace world of 50 ms RTT and 1% loss
// per direction and checks what programs inside it see.
func TestWorldLossyPath(t *testing.T) {
	w := startWorld(t, twoNodes)
	bAddr := w.Addr("b").String()

	t.Run("addresses inside namespaces", func(t *testing.T) {
		cmd, err := w.Command(context.Background(), "a", "ip", "-4", "addr", "show", Device)
		if err != nil {
			t.Fatal(err)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if !strings.Contains(string(out), w.Addr("a").String()+"/24") {
			t.Fatalf("node a has no address %s: %s", w.Addr("a"), out)
		}
		cmd, _ = w.Command(context.Background(), "b", "ip", "route", "show", "dev", Device)
		out, err = cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "rto_min lock 20ms") && !strings.Contains(string(out), "rto_min 20ms") {
			t.Fatalf("node b's route lacks rto_min 20ms: %s (%v)", out, err)
		}
	})

	t.Run("spawned command killed at shutdown", func(t *testing.T) {
		// A second world so that its shutdown can be observed here.
		cfg := Default()
		cfg.Name = "spawn"
		cfg.Nodes = []NodeConfig{{Name: "x"}, {Name: "y"}}
		w2, err := New(cfg, Deps{})
		if err != nil {
			t.Fatal(err)
		}
		if err := w2.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		cmd, err := w2.Command(context.Background(), "x", "sleep", "60")
		if err != nil {
			t.Fatal(err)
		}
		if err := w2.Spawn(cmd); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		time.Sleep(100 * time.Millisecond)
		if err := w2.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			t.Fatal("spawned command still running after Shutdown")
		}
		if _, err := w2.Command(context.Background(), "x", "true"); err == nil {
			t.Fatal("Command after Shutdown succeeded")
		}
	})

	t.Run("sysctl per namespace", func(t *testing.T) {
		host, err := os.ReadFile("/proc/sys/net/ipv4/tcp_congestion_control")
		if err != nil {
			t.Skip(err)
		}
		for node, want := range map[string]string{"a": "reno", "b": "bbr"} {
			cmd, err := w.Command(context.Background(), node, "cat", "/proc/sys/net/ipv4/tcp_congestion_control")
			if err != nil {
				t.Fatal(err)
			}
			out, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(string(out)); got != want {
				t.Errorf("node %s: congestion control %q, want %q", node, got, want)
			}
		}
		if after, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_congestion_control"); !bytes.Equal(after, host) {
			t.Errorf("host setting changed from %q to %q", host, after)
		}
	})

	t.Run("udp echo rtt and loss", func(t *testing.T) {
		var srv net.PacketConn
		if err := w.Do("b", func() (err error) { srv, err = net.ListenPacket("udp", bAddr+":7000"); return }); err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		go func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := srv.ReadFrom(buf)
				if err != nil {
					return
				}
				srv.WriteTo(buf[:n], from)
			}
		}()
		c, err := dialIn(w, "a", "udp", bAddr+":7000", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		const n = 300
		sent := make([]time.Time, n)
		rtts := make([]time.Duration, 0, n)
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 64)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			for len(rtts) < n {
				k, err := c.Read(buf)
				if err != nil || k < 8 {
					return
				}
				seq := binary.BigEndian.Uint64(buf)
				if seq < n {
					rtts = append(rtts, time.Since(sent[seq]))
				}
				if seq == n-1 {
					c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				}
			}
		}()
		msg := make([]byte, 64)
		for i := range n {
			binary.BigEndian.PutUint64(msg, uint64(i))
			sent[i] = time.Now()
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		<-done
		slices.Sort(rtts)
		lossRate := 1 - float64(len(rtts))/n
		med := rtts[len(rtts)/2]
		t.Logf("udp echo: %d/%d answered (loss %.1f%%), rtt min %v p50 %v max %v",
			len(rtts), n, 100*lossRate, rtts[0], med, rtts[len(rtts)-1])
		if rtts[0] < 50*time.Millisecond {
			t.Errorf("rtt %v below the configured 50ms", rtts[0])
		}
		// Upper bounds leave room for a loaded CI machine (the emulator's
		// timers fire late under CPU pressure) but catch a doubled delay.
		if med > 70*time.Millisecond {
			t.Errorf("median rtt %v, want 50ms + a few ms", med)
		}
		// 1% each way: about 2% of round trips fail; 300 samples.
		if lossRate > 0.08 {
			t.Errorf("round-trip loss %.1f%%, want about 2%%", 100*lossRate)
		}
	})

	t.Run("tcp connect rtt", func(t *testing.T) {
		ln := listenIn(t, w, "b", "tcp", bAddr+":7001")
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		var times []time.Duration
		for range 15 {
			start := time.Now()
			c, err := dialIn(w, "a", "tcp", bAddr+":7001", 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			times = append(times, time.Since(start))
			c.Close()
		}
		slices.Sort(times)
		med := times[len(times)/2]
		t.Logf("tcp connect: min %v p50 %v max %v", times[0], med, times[len(times)-1])
		if med < 50*time.Millisecond || med > 75*time.Millisecond {
			t.Errorf("median connect time %v, want one RTT of 50ms", med)
		}
	})

	t.Run("tcp bulk transfer", func(t *testing.T) {
		const size = 2 << 20
		payload := make([]byte, size)
		rand.Read(payload)
		want := sha256.Sum256(payload)
		ln := listenIn(t, w, "b", "tcp", bAddr+":7002")
		got := make(chan [32]byte, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			h := sha256.New()
			io.Copy(h, c)
			got <- [32]byte(h.Sum(nil))
		}()
		c, err := dialIn(w, "a", "tcp", bAddr+":7002", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		if _, err := io.Copy(c, bytes.NewReader(payload)); err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).CloseWrite()
		select {
		case sum := <-got:
			if sum != want {
				t.Fatal("bulk transfer corrupted")
			}
		case <-time.After(60 * time.Second):
			t.Fatal("bulk transfer did not complete in 60s")
		}
		c.Close()
		el := time.Since(start)
		st, _ := w.Stats("a", "b")
		t.Logf("bulk: %d bytes in %v (%.1f Mbit/s); a>b delivered %d lost %d", size, el,
			float64(size*8)/el.Seconds()/1e6, st.Delivered, st.Lost)
		if st.Lost == 0 {
			t.Error("no packet lost on a 1% loss link")
		}
	})
}

// TestWorldBandwidth checks the token bucket against the kernel's TCP: a bulk
// transfer over a 20 Mbit/s link runs at close to 20 Mbit/s and never above.
func TestWorldBandwidth(t *testing.T) {
	w := startWorld(t, `
name: bwtest
nodes: [{name: a}, {name: b}]
links:
  - {a: a, b: b, both: {delay: 5ms, rate: 20mbit, queue: 100000}}
`)
	bAddr := w.Addr("b").String()
	ln := listenIn(t, w, "b", "tcp", bAddr+":7003")
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(io.Discard, c)
	}()
	c, err := dialIn(w, "a", "tcp", bAddr+":7003", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const size = 6 << 20 // 2.5 s at 20 Mbit/s
	start := time.Now()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.Copy(c, io.LimitReader(zeroReader{}, size)); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, c) // returns when the server closes: all bytes read
	el := time.Since(start)
	mbit := float64(size*8) / el.Seconds() / 1e6
	st, _ := w.Stats("a", "b")
	t.Logf("20mbit link: %.2f Mbit/s goodput, %d queue drops", mbit, st.QueueFull)
	if mbit > 20.5 || mbit < 14 {
		t.Fatalf("goodput %.2f Mbit/s over a 20 Mbit/s link", mbit)
	}
}

// TestWorldNoLinkNoTraffic checks that nodes without a link cannot reach each
// other and that the world's subnet is not reachable from outside it.
func TestWorldNoLinkNoTraffic(t *testing.T) {
	w := startWorld(t, `
name: nolink
nodes: [{name: a}, {name: b}, {name: c}]
links:
  - {a: a, b: b}
`)
	ln := listenIn(t, w, "c", "tcp", w.Addr("c").String()+":7004")
	defer ln.Close()
	if c, err := dialIn(w, "a", "tcp", w.Addr("c").String()+":7004", 500*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("a reached c without a link")
	}
	lnb := listenIn(t, w, "b", "tcp", w.Addr("b").String()+":7004")
	defer lnb.Close()
	c, err := dialIn(w, "a", "tcp", w.Addr("b").String()+":7004", 2*time.Second)
	if err != nil {
		t.Fatalf("a cannot reach b over their link: %v", err)
	}
	c.Close()
}

// TestCleanStale checks that a namespace left by a dead emulator process is
// deleted and that one of a live process is kept.
func TestCleanStale(t *testing.T) {
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	if err := Unsupported(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	staleName := netns.Name(dead.Process.Pid, "crashed", "x")
	liveName := netns.Name(os.Getpid(), "alive", "x")
	for _, n := range []string{staleName, liveName} {
		if err := netns.Add(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	defer netns.Delete(ctx, liveName)
	removed, err := CleanStale(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(removed, staleName) || slices.Contains(removed, liveName) {
		t.Fatalf("removed %v; want %s and not %s", removed, staleName, liveName)
	}
	names, _ := netns.List()
	if slices.Contains(names, staleName) {
		t.Fatal("stale namespace still there")
	}
}

type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) { clear(b); return len(b), nil }
