package turn

import (
	"context"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// These tests use coturn's turnutils_uclient, an independent TURN client,
// against our server (tools/testdeps/install.sh installs coturn).

func needCoturn(t *testing.T) {
	t.Helper()
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	for _, bin := range []string{"turnutils_uclient", "turnutils_peer"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not installed (run tools/testdeps/install.sh): %v", bin, err)
		}
	}
}

// startPeer runs coturn's UDP echo peer on a free port.
func startPeer(t *testing.T) int {
	t.Helper()
	port := freeUDPPort(t)
	cmd := exec.Command("turnutils_peer", "-L", "127.0.0.1", "-p", strconv.Itoa(port))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	time.Sleep(100 * time.Millisecond)
	return port
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

type uclientResult struct {
	out      string
	err      error
	sent     int
	received int
	lost     int
}

var reLost = regexp.MustCompile(`Total lost packets (\d+)`)

func runUclient(t *testing.T, args ...string) uclientResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "turnutils_uclient", args...).CombinedOutput()
	r := uclientResult{out: string(out), err: err, lost: -1}
	if m := reLost.FindStringSubmatch(r.out); m != nil {
		r.lost, _ = strconv.Atoi(m[1])
	}
	r.sent, r.received = parseUclientCounts(r.out)
	return r
}

// parseUclientCounts reads the final "tot_send_msgs=N, tot_recv_msgs=M"
// statistics of coturn 4.6's uclient.
func parseUclientCounts(out string) (sent, recv int) {
	if m := regexp.MustCompile(`tot_send_msgs=(\d+)`).FindAllStringSubmatch(out, -1); m != nil {
		sent, _ = strconv.Atoi(m[len(m)-1][1])
	}
	if m := regexp.MustCompile(`tot_recv_msgs=(\d+)`).FindAllStringSubmatch(out, -1); m != nil {
		recv, _ = strconv.Atoi(m[len(m)-1][1])
	}
	return sent, recv
}

func TestCoturnClientRelays(t *testing.T) {
	needCoturn(t)
	ts := newTestServer(t, nil)
	peerPort := startPeer(t)
	c := cred(t, testSecret, "app", "uclient", time.Hour)
	udpPort := ts.Addrs().UDP[0].(*net.UDPAddr).Port
	tcpPort := ts.Addrs().TCP[0].(*net.TCPAddr).Port
	tlsPort := ts.Addrs().TLS[0].(*net.TCPAddr).Port
	base := []string{"-u", c.Username, "-w", c.Password, "-n", "50", "-l", "160", "-z", "5", "-m", "2"}
	peer := []string{"-e", "127.0.0.1", "-r", strconv.Itoa(peerPort)}
	cases := []struct {
		name string
		args []string
	}{
		{name: "udp channels", args: append(append([]string{"-p", strconv.Itoa(udpPort)}, peer...), base...)},
		{name: "udp send indications", args: append(append([]string{"-s", "-p", strconv.Itoa(udpPort)}, peer...), base...)},
		{name: "tcp", args: append(append([]string{"-t", "-p", strconv.Itoa(tcpPort)}, peer...), base...)},
		{name: "tls", args: append(append([]string{"-t", "-S", "-p", strconv.Itoa(tlsPort)}, peer...), base...)},
		{name: "udp client to client", args: append([]string{"-y", "-p", strconv.Itoa(udpPort)}, base...)},
		{name: "tcp relay rfc6062", args: append([]string{"-T", "-p", strconv.Itoa(tcpPort)}, base...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.ToFloat64(ts.m.allocationsCreated)
			r := runUclient(t, append(tc.args, "127.0.0.1")...)
			if r.err != nil {
				t.Fatalf("uclient: %v\n%s", r.err, r.out)
			}
			if r.lost != 0 || r.sent == 0 || r.received < r.sent {
				t.Fatalf("sent %d received %d lost %d\n%s", r.sent, r.received, r.lost, r.out)
			}
			if testutil.ToFloat64(ts.m.allocationsCreated) <= before {
				t.Fatal("no allocation counted")
			}
			t.Logf("%s: sent %d received %d lost %d", tc.name, r.sent, r.received, r.lost)
		})
	}
	if testutil.ToFloat64(ts.m.channelsCreated) == 0 {
		t.Fatal("no channel bound")
	}
}

func TestCoturnClientRefused(t *testing.T) {
	needCoturn(t)
	peerPort := startPeer(t)
	t.Run("loopback peer under the default policy", func(t *testing.T) {
		ts := newTestServer(t, func(c *Config) { c.Peers.Allow = nil })
		c := cred(t, testSecret, "app", "uclient", time.Hour)
		r := runUclient(t, "-u", c.Username, "-w", c.Password, "-n", "10", "-l", "160",
			"-e", "127.0.0.1", "-r", strconv.Itoa(peerPort), "-p", strconv.Itoa(ts.Addrs().UDP[0].(*net.UDPAddr).Port), "127.0.0.1")
		if r.err == nil && r.received > 0 {
			t.Fatalf("data relayed to a denied peer: received %d\n%s", r.received, r.out)
		}
		if ts.refusals(refusePeer) == 0 {
			t.Fatalf("peer_denied not counted\n%s", r.out)
		}
		if testutil.ToFloat64(ts.m.packetsToPeer) != 0 {
			t.Fatal("packets relayed to the denied peer")
		}
	})
	t.Run("metadata peer", func(t *testing.T) {
		ts := newTestServer(t, nil)
		c := cred(t, testSecret, "app", "uclient", time.Hour)
		r := runUclient(t, "-u", c.Username, "-w", c.Password, "-n", "3", "-l", "160",
			"-e", "169.254.169.254", "-r", "80", "-p", strconv.Itoa(ts.Addrs().UDP[0].(*net.UDPAddr).Port), "127.0.0.1")
		if r.err == nil && r.received > 0 {
			t.Fatalf("received %d\n%s", r.received, r.out)
		}
		if ts.refusals(refusePeer) == 0 {
			t.Fatalf("peer_denied not counted\n%s", r.out)
		}
	})
	t.Run("user quota", func(t *testing.T) {
		ts := newTestServer(t, func(c *Config) { c.Quotas.PerUser = 1 })
		c := cred(t, testSecret, "app", "uclient", time.Hour)
		// Two clients of one user: the second allocation is over the quota.
		r := runUclient(t, "-u", c.Username, "-w", c.Password, "-n", "5", "-l", "160", "-c", "-m", "2",
			"-e", "127.0.0.1", "-r", strconv.Itoa(peerPort), "-p", strconv.Itoa(ts.Addrs().UDP[0].(*net.UDPAddr).Port), "127.0.0.1")
		if ts.refusals(refuseQuotaUser) == 0 {
			t.Fatalf("quota_user not counted (uclient err %v)\n%s", r.err, r.out)
		}
		if got := testutil.ToFloat64(ts.m.allocationsCreated); got != 1 {
			t.Fatalf("allocations created %v, want 1", got)
		}
	})
	t.Run("bandwidth limit", func(t *testing.T) {
		ts := newTestServer(t, func(c *Config) { c.Limits.AllocationKbps = 64 })
		c := cred(t, testSecret, "app", "uclient", time.Hour)
		// 200 packets of 1000 B at 5 ms (1.6 Mbit/s) through a 64 kbit/s limit.
		r := runUclient(t, "-u", c.Username, "-w", c.Password, "-n", "200", "-l", "1000", "-z", "5", "-c",
			"-e", "127.0.0.1", "-r", strconv.Itoa(peerPort), "-p", strconv.Itoa(ts.Addrs().UDP[0].(*net.UDPAddr).Port), "127.0.0.1")
		if r.err != nil {
			t.Fatalf("uclient: %v\n%s", r.err, r.out)
		}
		if r.received > r.sent/4 || testutil.ToFloat64(ts.m.droppedAllocBW) == 0 {
			t.Fatalf("limit did not hold: sent %d received %d dropped %v", r.sent, r.received, testutil.ToFloat64(ts.m.droppedAllocBW))
		}
		t.Logf("sent %d, received %d through the limit", r.sent, r.received)
	})
	t.Run("expired credential", func(t *testing.T) {
		ts := newTestServer(t, nil)
		c := cred(t, testSecret, "app", "uclient", -time.Second)
		r := runUclient(t, "-u", c.Username, "-w", c.Password, "-n", "3", "-l", "160",
			"-e", "127.0.0.1", "-r", strconv.Itoa(peerPort), "-p", strconv.Itoa(ts.Addrs().UDP[0].(*net.UDPAddr).Port), "127.0.0.1")
		if r.err == nil && r.received > 0 {
			t.Fatalf("expired credential relayed: %s", r.out)
		}
		if ts.refusals(refuseExpired) == 0 || testutil.ToFloat64(ts.m.allocationsCreated) != 0 {
			t.Fatalf("expired refusals %v allocations %v\n%s", ts.refusals(refuseExpired), testutil.ToFloat64(ts.m.allocationsCreated), r.out)
		}
	})
}
