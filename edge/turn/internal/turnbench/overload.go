package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"
	"golang.org/x/net/ipv4"

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/turncred"
)

// The overload sweep offers both servers the same rates, from below their
// capacity to well beyond it, and says what each relays per CPU-second,
// what it loses and how fairly it shares what it relays among the
// allocations.
//
// turnutils_uclient cannot do this: it reports loss only for its whole run
// (allocations, warm-up and tail included), nothing per allocation, and
// pays a syscall per datagram on the load core, so it stops offering more
// long before a server saturates. The load here is our own: one process on
// CPU 1 holding N allocations (STUN Allocate and ChannelBind done by hand,
// so the data plane owns the sockets) and the UDP echo peer. Clients send
// ChannelData with sendmmsg on a schedule (rate/N per allocation, caught up
// every tick); the peer echoes with recvmmsg/sendmmsg; clients read with
// recvmmsg. Every datagram carries its send time and allocation, so the
// window's figures are exact: packets sent in the window and how many of
// them came back, per allocation, with their round-trip times.

// loadResult is what one load process measured in its window.
type loadResult struct {
	Offered   float64 // round trips/s sent in the window (packets/s each way if all came back)
	ToPeer    float64 // packets/s the peer received in the window (first leg relayed)
	ToClient  float64 // packets/s the clients received in the window (second leg relayed)
	Sent      int64   // packets sent in the window
	Returned  int64   // of those, echoes back at their client
	PerAlloc  []int64 // Returned by allocation
	RTTp50    float64 // ms, of the returned
	RTTp99    float64
	LoadCores float64 // this process's CPU over the window
	Seconds   float64 // the window's length
	Allocs    int     // allocations made
}

// rttBucket is the histogram's resolution; rttBuckets of it cover 4 s.
const (
	rttBucket  = 50 * time.Microsecond
	rttBuckets = 80000
)

// genAlloc is one allocation of the load process.
type genAlloc struct {
	conn   *net.UDPConn // connected to the server
	pc     *ipv4.PacketConn
	ch     uint16
	sent   int64 // by the sender goroutine
	inWin  int64 // sent in the window, by the sender goroutine
	backIn atomic.Int64
}

// load is the load process: `turnbench load -server ADDR -secret S ...`.
func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	server := fs.String("server", "", "TURN server UDP address")
	secret := fs.String("secret", "", "REST secret")
	allocs := fs.Int("allocs", 50, "allocations")
	rate := fs.Float64("rate", 10000, "round trips offered per second, all allocations together")
	size := fs.Int("size", 160, "payload bytes")
	warm := fs.Duration("warm", 1500*time.Millisecond, "sending before the window")
	window := fs.Duration("window", 4*time.Second, "measurement window")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *size < 16 {
		return errors.New("size below 16 bytes")
	}
	kr, err := turncred.NewKeyring([]turncred.Secret{{ID: "bench", Value: config.NewSecret(*secret)}})
	if err != nil {
		return err
	}
	cred, err := kr.Issue("bench", "overload", time.Hour, time.Now())
	if err != nil {
		return err
	}
	srv, err := net.ResolveUDPAddr("udp4", *server)
	if err != nil {
		return err
	}
	echo, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	_ = echo.SetReadBuffer(4 << 20)
	_ = echo.SetWriteBuffer(4 << 20)
	peer := echo.LocalAddr().(*net.UDPAddr)

	gen := make([]*genAlloc, 0, *allocs)
	for i := 0; i < *allocs; i++ {
		c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, srv)
		if err != nil {
			return err
		}
		_ = c.SetReadBuffer(4 << 20)
		_ = c.SetWriteBuffer(4 << 20)
		ch := uint16(0x4000 + i)
		if err := allocateAndBind(c, cred.Username, cred.Password, peer, ch); err != nil {
			return fmt.Errorf("allocation %d: %w", i, err)
		}
		_ = c.SetReadDeadline(time.Time{})
		gen = append(gen, &genAlloc{conn: c, pc: ipv4.NewPacketConn(c), ch: ch})
	}

	start := time.Now()
	winStart, winEnd := int64(*warm), int64(*warm+*window)
	var toPeer, toClient atomic.Int64
	var hist [rttBuckets]atomic.Int64

	// The echo peer.
	go func() {
		pc := ipv4.NewPacketConn(echo)
		msgs := make([]ipv4.Message, 64)
		for i := range msgs {
			msgs[i].Buffers = [][]byte{make([]byte, 2048)}
		}
		out := make([]ipv4.Message, 64)
		for {
			n, err := pc.ReadBatch(msgs, 0)
			if err != nil {
				return
			}
			toPeer.Add(int64(n))
			for i := 0; i < n; i++ {
				out[i] = ipv4.Message{Buffers: [][]byte{msgs[i].Buffers[0][:msgs[i].N]}, Addr: msgs[i].Addr}
			}
			for sent := 0; sent < n; {
				k, err := pc.WriteBatch(out[sent:n], 0)
				if err != nil {
					sent++ // an unreachable relay: skip that datagram
					continue
				}
				sent += k
			}
		}
	}()
	// The clients' readers.
	for _, a := range gen {
		go func(a *genAlloc) {
			msgs := make([]ipv4.Message, 64)
			for i := range msgs {
				msgs[i].Buffers = [][]byte{make([]byte, 2048)}
			}
			for {
				n, err := a.pc.ReadBatch(msgs, 0)
				if err != nil {
					return
				}
				now := int64(time.Since(start))
				got := 0
				for i := 0; i < n; i++ {
					b := msgs[i].Buffers[0][:msgs[i].N]
					if len(b) < 4+16 || b[0]&0xC0 != 0x40 {
						continue // a STUN answer or a Data indication: not data
					}
					got++
					stamp := int64(binary.BigEndian.Uint64(b[4:12]))
					if stamp < winStart || stamp >= winEnd {
						continue
					}
					a.backIn.Add(1)
					hist[min(int((now-stamp)/int64(rttBucket)), rttBuckets-1)].Add(1)
				}
				toClient.Add(int64(got))
			}
		}(a)
	}

	// The sender: every tick each allocation sends what its schedule owes,
	// at most a few batches, so a late tick catches up without one burst
	// hiding the rest of the load.
	per := *rate / float64(len(gen))
	frames := make([][]byte, 64)
	for i := range frames {
		frames[i] = make([]byte, 4+*size)
	}
	msgs := make([]ipv4.Message, 64)
	var cpu0, cpu1 float64
	var peer0, peer1, cl0, cl1 int64
	var t0, t1 time.Time
	phase := 0
	for {
		el := time.Since(start)
		if phase == 0 && int64(el) >= winStart {
			phase, t0, cpu0 = 1, time.Now(), cpuSeconds(os.Getpid())
			peer0, cl0 = toPeer.Load(), toClient.Load()
			fmt.Println("WINDOW START")
		}
		if phase == 1 && int64(el) >= winEnd {
			t1, cpu1 = time.Now(), cpuSeconds(os.Getpid())
			peer1, cl1 = toPeer.Load(), toClient.Load()
			fmt.Println("WINDOW END")
			break
		}
		target := int64(el.Seconds() * per)
		stamp := int64(el)
		for _, a := range gen {
			owed := min(target-a.sent, 4*int64(len(frames)))
			for owed > 0 {
				k := int(min(owed, int64(len(frames))))
				for i := 0; i < k; i++ {
					f := frames[i]
					binary.BigEndian.PutUint16(f[0:2], a.ch)
					binary.BigEndian.PutUint16(f[2:4], uint16(*size))
					binary.BigEndian.PutUint64(f[4:12], uint64(stamp))
					msgs[i] = ipv4.Message{Buffers: [][]byte{f}}
				}
				sent := 0
				for sent < k {
					n, err := a.pc.WriteBatch(msgs[sent:k], 0)
					if err != nil {
						sent++ // a refused datagram (ECONNREFUSED after an ICMP error) is lost
						continue
					}
					sent += n
				}
				a.sent += int64(k)
				if stamp >= winStart && stamp < winEnd {
					a.inWin += int64(k)
				}
				owed -= int64(k)
			}
			if target > a.sent {
				a.sent = target // the schedule moves on: what the load core could not send was not offered
			}
		}
		time.Sleep(time.Millisecond)
	}
	// Echoes of the window's last packets are still on their way.
	time.Sleep(300 * time.Millisecond)

	secs := t1.Sub(t0).Seconds()
	r := loadResult{Allocs: len(gen), Seconds: secs, LoadCores: (cpu1 - cpu0) / secs,
		ToPeer: float64(peer1-peer0) / secs, ToClient: float64(cl1-cl0) / secs}
	for _, a := range gen {
		r.Sent += a.inWin
		back := a.backIn.Load()
		r.Returned += back
		r.PerAlloc = append(r.PerAlloc, back)
	}
	r.Offered = float64(r.Sent) / secs
	var counts [rttBuckets]int64
	for i := range hist {
		counts[i] = hist[i].Load()
	}
	r.RTTp50, r.RTTp99 = quantileMs(counts[:], 0.50), quantileMs(counts[:], 0.99)
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	fmt.Printf("LOAD %s\n", b)
	return nil
}

func quantileMs(counts []int64, q float64) float64 {
	var total int64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	want := int64(math.Ceil(q * float64(total)))
	var seen int64
	for i, c := range counts {
		seen += c
		if seen >= want {
			return float64(time.Duration(i+1)*rttBucket) / float64(time.Millisecond)
		}
	}
	return float64(time.Duration(len(counts))*rttBucket) / float64(time.Millisecond)
}

// xorPeer sets XOR-PEER-ADDRESS.
type xorPeer stun.XORMappedAddress

func (a xorPeer) AddTo(m *stun.Message) error {
	return stun.XORMappedAddress(a).AddToAs(m, stun.AttrXORPeerAddress)
}

// allocateAndBind makes a UDP allocation on c's server with the long-term
// credential (user, pass) and binds channel ch to peer.
func allocateAndBind(c *net.UDPConn, user, pass string, peer *net.UDPAddr, ch uint16) error {
	buf := make([]byte, 1500)
	ask := func(setters ...stun.Setter) (*stun.Message, error) {
		m, err := stun.Build(append([]stun.Setter{stun.TransactionID}, setters...)...)
		if err != nil {
			return nil, err
		}
		for try := 0; try < 5; try++ {
			if _, err := c.Write(m.Raw); err != nil {
				return nil, err
			}
			_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			for {
				n, err := c.Read(buf)
				if err != nil {
					break // no answer in time: ask again
				}
				r := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
				if r.Decode() == nil && r.TransactionID == m.TransactionID {
					return r, nil
				}
			}
		}
		return nil, fmt.Errorf("%s: no answer", m.Type)
	}
	failed := func(r *stun.Message) error {
		var code stun.ErrorCodeAttribute
		_ = code.GetFrom(r)
		return fmt.Errorf("%s: %s", r.Type, code)
	}
	transport := stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}
	allocate := stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	r, err := ask(allocate, transport, stun.Fingerprint)
	if err != nil {
		return err
	}
	var realm stun.Realm
	var nonce stun.Nonce
	if realm.GetFrom(r) != nil || nonce.GetFrom(r) != nil {
		return failed(r)
	}
	integrity := stun.NewLongTermIntegrity(user, realm.String(), pass)
	if r, err = ask(allocate, transport, stun.NewUsername(user), realm, nonce, integrity, stun.Fingerprint); err != nil {
		return err
	}
	if r.Type.Class != stun.ClassSuccessResponse {
		return failed(r)
	}
	number := stun.RawAttribute{Type: stun.AttrChannelNumber, Value: []byte{byte(ch >> 8), byte(ch), 0, 0}}
	r, err = ask(stun.NewType(stun.MethodChannelBind, stun.ClassRequest), number, xorPeer{IP: peer.IP, Port: peer.Port},
		stun.NewUsername(user), realm, nonce, integrity, stun.Fingerprint)
	if err != nil {
		return err
	}
	if r.Type.Class != stun.ClassSuccessResponse {
		return failed(r)
	}
	return nil
}

// overloadPoint is one server at one offered rate.
type overloadPoint struct {
	kind  string
	rate  float64
	load  loadResult
	cores float64 // the server's CPU in the window
}

func (p overloadPoint) relayed() float64 { return p.load.ToPeer + p.load.ToClient }

func (p overloadPoint) perCPUSecond() float64 { return p.relayed() / max(p.cores, 0.01) }

func (p overloadPoint) lossPct() float64 {
	if p.load.Sent == 0 {
		return 100
	}
	return 100 * float64(p.load.Sent-p.load.Returned) / float64(p.load.Sent)
}

// jain is Jain's fairness index of the allocations' returned packets (all
// offered the same): 1 when all got the same, 1/n when one got everything.
func jain(xs []int64) float64 {
	var s, s2 float64
	for _, x := range xs {
		s += float64(x)
		s2 += float64(x) * float64(x)
	}
	if s2 == 0 {
		return 0
	}
	return s * s / (float64(len(xs)) * s2)
}

// minMaxShare is the least served allocation's returned packets over the
// most served one's.
func minMaxShare(xs []int64) float64 {
	if len(xs) == 0 || slices.Max(xs) == 0 {
		return 0
	}
	return float64(slices.Min(xs)) / float64(slices.Max(xs))
}

func overloadBench(args []string) error {
	fs := flag.NewFlagSet("overload", flag.ContinueOnError)
	rates := fs.String("rates", "5000,15000,30000,60000,90000", "round trips offered per second, all allocations together")
	allocs := fs.Int("allocs", 50, "allocations")
	size := fs.Int("size", 160, "payload bytes")
	warm := fs.Duration("warm", 1500*time.Millisecond, "load before the window")
	window := fs.Duration("window", 4*time.Second, "measurement window")
	servers := fs.String("servers", "coturn,longlink", "servers, measured in turn at each rate")
	if err := fs.Parse(args); err != nil {
		return err
	}
	e, err := setup()
	if err != nil {
		return err
	}
	defer os.RemoveAll(e.dir)
	fmt.Printf("# load: %d allocations, %d B payloads, echo peer, all in one process on CPU 1 (sendmmsg/recvmmsg); servers on CPU 0; %s warm-up, %s window per point\n",
		*allocs, *size, *warm, *window)
	fmt.Println("# columns: server, offered round trips/s (offered relayed pkt/s = 2x), relayed pkt/s (both legs), server cores, relayed pkt per CPU-second, round-trip loss, Jain index and min/max share of the allocations' returned packets, RTT p50/p99, load process cores")
	for _, rs := range strings.Split(*rates, ",") {
		rate, err := strconv.ParseFloat(strings.TrimSpace(rs), 64)
		if err != nil {
			return err
		}
		for _, kind := range strings.Split(*servers, ",") {
			p, err := e.overloadRun(kind, rate, *allocs, *size, *warm, *window)
			if err != nil {
				return fmt.Errorf("%s at %.0f/s: %w", kind, rate, err)
			}
			printOverload(p)
		}
	}
	return nil
}

func printOverload(p overloadPoint) {
	prefix := "turn"
	if p.kind == "coturn" {
		prefix = "coturn"
	}
	l := p.load
	fmt.Printf("# %-8s offered %6.0f/s (sent %6.0f): relayed %7.0f pkt/s (%.0f to peer, %.0f to client), %.2f cores, %7.0f per CPU-s, loss %5.1f %%, jain %.3f, min/max %.2f, rtt p50 %.2f p99 %.2f ms, load %.2f cores\n",
		p.kind, p.rate, l.Offered, p.relayed(), l.ToPeer, l.ToClient, p.cores, p.perCPUSecond(), p.lossPct(), jain(l.PerAlloc), minMaxShare(l.PerAlloc), l.RTTp50, l.RTTp99, l.LoadCores)
	at := fmt.Sprintf("%gk", p.rate/1000)
	fmt.Printf("RESULT %s_overload_%s_offered %.0f packets/s\n", prefix, at, l.Offered)
	fmt.Printf("RESULT %s_overload_%s_relayed %.0f packets/s\n", prefix, at, p.relayed())
	fmt.Printf("RESULT %s_overload_%s_relayed_per_cpu_second %.0f packets\n", prefix, at, p.perCPUSecond())
	fmt.Printf("RESULT %s_overload_%s_loss %.2f percent\n", prefix, at, p.lossPct())
	fmt.Printf("RESULT %s_overload_%s_jain %.3f index\n", prefix, at, jain(l.PerAlloc))
	fmt.Printf("RESULT %s_overload_%s_rtt_p99 %.2f ms\n", prefix, at, l.RTTp99)
	// The picture: relayed packets/s (dashed) and per CPU-second (solid)
	// against offered relayed packets/s.
	fmt.Printf("POINT %s %.0f %.0f %.0f\n", p.kind, 2*p.rate, p.relayed(), p.perCPUSecond())
}

// overloadRun measures one server at one rate: a fresh server pinned to
// CPU 0, a load process on CPU 1, the server's CPU read when the load
// process opens and closes its window.
func (e *env) overloadRun(kind string, rate float64, allocs, size int, warm, window time.Duration) (overloadPoint, error) {
	p := overloadPoint{kind: kind, rate: rate}
	if kind != "coturn" && kind != "longlink" {
		return p, fmt.Errorf("unknown server %q", kind)
	}
	port := freePort()
	srv, err := e.server(kind, port, "")
	if err != nil {
		return p, err
	}
	defer srv.stop()
	pr, pw, err := os.Pipe()
	if err != nil {
		return p, err
	}
	lp, err := start(pw, "taskset", "-c", "1", e.self, "load", "-server", fmt.Sprintf("127.0.0.1:%d", port), "-secret", e.secret,
		"-allocs", strconv.Itoa(allocs), "-rate", strconv.FormatFloat(rate, 'f', 0, 64), "-size", strconv.Itoa(size),
		"-warm", warm.String(), "-window", window.String())
	pw.Close()
	if err != nil {
		return p, err
	}
	defer lp.stop()
	var cpu0, cpu1 float64
	var out []string
	got := false
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "WINDOW START":
			cpu0 = cpuSeconds(srv.pid())
		case line == "WINDOW END":
			cpu1 = cpuSeconds(srv.pid())
		case strings.HasPrefix(line, "LOAD "):
			if err := json.Unmarshal([]byte(line[5:]), &p.load); err != nil {
				return p, err
			}
			got = true
		default:
			out = append(out, line)
		}
	}
	if !got {
		return p, fmt.Errorf("load process printed no result:\n%s", tail(strings.Join(out, "\n"), 20))
	}
	if p.load.Allocs != allocs {
		return p, fmt.Errorf("%d of %d allocations made", p.load.Allocs, allocs)
	}
	p.cores = (cpu1 - cpu0) / p.load.Seconds
	return p, nil
}
