package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"

	"github.com/longlink/longlink/geo/mmdbbuild"
)

// The DNS load with client subnets from many places: dnsperf sends one
// EDNS client subnet (ECS) per run, so every geo lookup of the LBS after the
// first is a cache hit. dnsLoad is a Go generator over UDP that puts a
// different subnet, drawn from the geo database the server uses, into each
// query: packed once per name, the query's ID and the subnet's address
// bytes are patched in place, and datagrams move in batches (sendmmsg /
// recvmmsg) so that one core sends more than the server's core answers.

// worldCities are the places the synthetic geo database spreads its
// networks over (country, continent, latitude, longitude).
var worldCities = []struct {
	country, continent string
	lat, lon           float64
}{
	{"US", "NA", 37.39, -122.08}, {"US", "NA", 40.71, -74.0}, {"US", "NA", 41.88, -87.63}, {"CA", "NA", 43.65, -79.38},
	{"MX", "NA", 19.43, -99.13}, {"BR", "SA", -23.55, -46.63}, {"AR", "SA", -34.6, -58.38}, {"CL", "SA", -33.45, -70.67},
	{"CO", "SA", 4.71, -74.07}, {"GB", "EU", 51.51, -0.13}, {"DE", "EU", 50.11, 8.68}, {"FR", "EU", 48.86, 2.35},
	{"NL", "EU", 52.37, 4.9}, {"ES", "EU", 40.42, -3.7}, {"IT", "EU", 45.46, 9.19}, {"PL", "EU", 52.23, 21.01},
	{"SE", "EU", 59.33, 18.07}, {"TR", "AS", 41.01, 28.98}, {"RU", "EU", 55.76, 37.62}, {"ZA", "AF", -26.2, 28.04},
	{"NG", "AF", 6.52, 3.38}, {"EG", "AF", 30.04, 31.24}, {"KE", "AF", -1.29, 36.82}, {"AE", "AS", 25.2, 55.27},
	{"IN", "AS", 19.08, 72.88}, {"IN", "AS", 28.61, 77.21}, {"SG", "AS", 1.29, 103.85}, {"ID", "AS", -6.21, 106.85},
	{"TH", "AS", 13.76, 100.5}, {"VN", "AS", 10.82, 106.63}, {"PH", "AS", 14.6, 120.98}, {"CN", "AS", 31.23, 121.47},
	{"CN", "AS", 39.9, 116.4}, {"CN", "AS", 22.54, 114.06}, {"HK", "AS", 22.32, 114.17}, {"TW", "AS", 25.03, 121.57},
	{"KR", "AS", 37.57, 126.98}, {"JP", "AS", 35.68, 139.69}, {"AU", "OC", -33.87, 151.21}, {"NZ", "OC", -36.85, 174.76},
}

// worldFirst is the first address of the synthetic world: its networks are
// consecutive /18s from here (public unicast space; the addresses are only
// data in the queries, never a destination).
var worldFirst = netip.MustParseAddr("20.0.0.0")

// syntheticWorld is a geo database of n /18 networks, each placed in one
// of worldCities at random (seeded: the same n and seed give the same
// world) with its own ASN.
func syntheticWorld(n int, seed uint64) []mmdbbuild.Record {
	rng := rand.New(rand.NewPCG(seed, 1))
	base := binary.BigEndian.Uint32(worldFirst.AsSlice())
	recs := make([]mmdbbuild.Record, n)
	for i := range recs {
		c := worldCities[rng.IntN(len(worldCities))]
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], base+uint32(i)<<14)
		lat, lon := c.lat, c.lon
		recs[i] = mmdbbuild.Record{Network: netip.PrefixFrom(netip.AddrFrom4(a), 18).String(), Country: c.country,
			Continent: c.continent, Lat: &lat, Lon: &lon, ASN: 64512 + uint32(i%1000), ASOrg: "Synthetic " + c.country}
	}
	return recs
}

// drawSubnets picks n distinct /24s (their first addresses) inside the
// IPv4 networks of recs, a network at random for each.
func drawSubnets(recs []mmdbbuild.Record, n int, seed uint64) ([]uint32, error) {
	var nets []netip.Prefix
	room := 0
	for _, r := range recs {
		p, err := netip.ParsePrefix(r.Network)
		if err != nil || !p.Addr().Is4() || p.Bits() > 24 {
			continue
		}
		nets = append(nets, p.Masked())
		room += 1 << (24 - p.Bits())
	}
	if n > room {
		return nil, fmt.Errorf("%d subnets asked, the database's IPv4 networks hold %d /24s", n, room)
	}
	rng := rand.New(rand.NewPCG(seed, 2))
	seen := make(map[uint32]bool, n)
	out := make([]uint32, 0, n)
	for len(out) < n {
		p := nets[rng.IntN(len(nets))]
		s := binary.BigEndian.Uint32(p.Addr().AsSlice()) + uint32(rng.IntN(1<<(24-p.Bits())))<<8
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out, nil
}

// queryTemplate is a packed query with an ECS option for an IPv4 /24; the
// option is the packet's last record, so the subnet's three address bytes
// are its last three.
type queryTemplate struct {
	wire []byte
}

func newQueryTemplate(name string, qtype uint16) (queryTemplate, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = false
	opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	opt.SetUDPSize(1232)
	opt.Option = append(opt.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24,
		Address: net.IPv4(192, 0, 2, 0).To4()})
	m.Extra = append(m.Extra, opt)
	wire, err := m.Pack()
	if err != nil {
		return queryTemplate{}, err
	}
	if !slicesHasSuffix(wire, []byte{192, 0, 2}) {
		return queryTemplate{}, errors.New("packed ECS option is not at the end of the query")
	}
	return queryTemplate{wire: wire}, nil
}

func slicesHasSuffix(b, s []byte) bool {
	return len(b) >= len(s) && slices.Equal(b[len(b)-len(s):], s)
}

// fill writes the query with id and the /24 starting at subnet into buf
// (len(t.wire) bytes or more) and returns it.
func (t queryTemplate) fill(buf []byte, id uint16, subnet uint32) []byte {
	q := buf[:len(t.wire)]
	copy(q, t.wire)
	binary.BigEndian.PutUint16(q, id)
	n := len(q)
	q[n-3], q[n-2], q[n-1] = byte(subnet>>24), byte(subnet>>16), byte(subnet>>8)
	return q
}

// parseReply reads what the generator needs of a datagram: its ID, whether
// it is a response at all, and whether it answers (NOERROR with at least
// one answer record).
func parseReply(b []byte) (id uint16, isResponse, answered bool) {
	if len(b) < 12 || b[2]&0x80 == 0 {
		return 0, false, false
	}
	return binary.BigEndian.Uint16(b), true, b[3]&0x0f == dns.RcodeSuccess && binary.BigEndian.Uint16(b[6:]) > 0
}

// dnsLoadQueries are the names asked, in the proportions dnsperf's query
// file had.
var dnsLoadQueries = []struct {
	name  string
	qtype uint16
}{
	{"link.demo.lbs.test", dns.TypeA}, {"link.demo.lbs.test", dns.TypeA},
	{"_link._tcp.demo.lbs.test", dns.TypeSRV}, {"turn.demo.lbs.test", dns.TypeA},
}

// loadStats is what one socket of the generator counted.
type loadStats struct {
	responses, answered, lost int64
	lat                       []time.Duration // a sample
}

// runDNSLoad is `lbsbench dnsload`: it sends queries over -sockets UDP
// sockets, each keeping up to -window queries in flight, for -seconds, and
// prints one line "DNSLOAD key=value ...".
func runDNSLoad(args []string) error {
	fs := flag.NewFlagSet("dnsload", flag.ContinueOnError)
	addr := fs.String("addr", "", "server address")
	worldCSV := fs.String("world", "", "the geo database's CSV: subnets are drawn from its IPv4 networks")
	subnets := fs.Int("subnets", 100000, "distinct /24 client subnets, drawn once; each query takes one at random")
	seconds := fs.Int("seconds", 15, "duration")
	sockets := fs.Int("sockets", 2, "UDP sockets")
	window := fs.Int("window", 256, "queries in flight per socket")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, err := os.Open(*worldCSV)
	if err != nil {
		return err
	}
	recs, err := mmdbbuild.ParseCSV(f)
	f.Close()
	if err != nil {
		return err
	}
	nets, err := drawSubnets(recs, *subnets, 7)
	if err != nil {
		return err
	}
	var tpls []queryTemplate
	for _, q := range dnsLoadQueries {
		t, err := newQueryTemplate(q.name, q.qtype)
		if err != nil {
			return err
		}
		tpls = append(tpls, t)
	}
	raddr, err := net.ResolveUDPAddr("udp", *addr)
	if err != nil {
		return err
	}
	end := time.Now().Add(time.Duration(*seconds) * time.Second)
	stats := make([]loadStats, *sockets)
	errs := make([]error, *sockets)
	var wg sync.WaitGroup
	start := time.Now()
	for s := range *sockets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stats[s], errs[s] = loadSocket(raddr, tpls, nets, *window, end, uint64(s))
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	var total loadStats
	for s := range stats {
		if errs[s] != nil {
			return errs[s]
		}
		total.responses += stats[s].responses
		total.answered += stats[s].answered
		total.lost += stats[s].lost
		total.lat = append(total.lat, stats[s].lat...)
	}
	slices.Sort(total.lat)
	pct := func(q float64) float64 {
		if len(total.lat) == 0 {
			return 0
		}
		return float64(total.lat[int(float64(len(total.lat)-1)*q)].Microseconds()) / 1000
	}
	fmt.Printf("DNSLOAD responses=%d answered=%d lost=%d seconds=%.3f p50_ms=%.3f p99_ms=%.3f subnets=%d\n",
		total.responses, total.answered, total.lost, el, pct(0.5), pct(0.99), len(nets))
	return nil
}

// dnsLoss is how long a query may go unanswered before it counts as lost.
const dnsLoss = 2 * time.Second

// loadSocket drives one socket until end.
func loadSocket(raddr *net.UDPAddr, tpls []queryTemplate, nets []uint32, window int, end time.Time, seed uint64) (loadStats, error) {
	var st loadStats
	conn, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		return st, err
	}
	defer conn.Close()
	_ = conn.SetReadBuffer(4 << 20)
	_ = conn.SetWriteBuffer(4 << 20)
	pc := ipv4.NewPacketConn(conn)
	rng := rand.New(rand.NewPCG(seed, 3))
	const batch = 64
	out := make([]ipv4.Message, batch)
	in := make([]ipv4.Message, batch)
	for i := range out {
		out[i].Buffers = [][]byte{make([]byte, 512)}
		in[i].Buffers = [][]byte{make([]byte, 1500)}
	}
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = out[i].Buffers[0]
	}
	// sentAt[id] is when query id left, 0 while id is free.
	sentAt := make([]int64, 1<<16)
	epoch := time.Now()
	var nextID uint16
	inFlight := 0
	deadline := time.Time{}
	lastSweep := epoch
	for {
		now := time.Now()
		if now.After(end) {
			break
		}
		k := 0
		for inFlight < window && k < batch {
			for sentAt[nextID] != 0 {
				nextID++
			}
			t := tpls[rng.IntN(len(tpls))]
			out[k].Buffers[0] = t.fill(bufs[k], nextID, nets[rng.IntN(len(nets))])
			sentAt[nextID] = int64(now.Sub(epoch)) + 1
			nextID++
			inFlight++
			k++
		}
		for sent := 0; sent < k; {
			w, err := pc.WriteBatch(out[sent:k], 0)
			if err != nil {
				return st, fmt.Errorf("send: %w", err)
			}
			sent += w
		}
		if deadline.Sub(now) < 100*time.Millisecond {
			deadline = now.Add(200 * time.Millisecond)
			_ = conn.SetReadDeadline(deadline)
		}
		r, err := pc.ReadBatch(in, 0)
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			return st, fmt.Errorf("receive: %w", err)
		}
		at := int64(time.Since(epoch))
		for _, m := range in[:max(r, 0)] {
			id, isResp, answered := parseReply(m.Buffers[0][:m.N])
			if !isResp || sentAt[id] == 0 {
				continue
			}
			if st.responses%16 == 0 {
				st.lat = append(st.lat, time.Duration(at-sentAt[id]+1))
			}
			sentAt[id] = 0
			inFlight--
			st.responses++
			if answered {
				st.answered++
			}
		}
		if now.Sub(lastSweep) > dnsLoss/4 {
			lastSweep = now
			old := int64(now.Sub(epoch) - dnsLoss)
			for id, t := range sentAt {
				if t != 0 && t < old {
					sentAt[id] = 0
					inFlight--
					st.lost++
				}
			}
		}
	}
	return st, nil
}

// writeWorldCSV writes recs in mmdbbuild's CSV format.
func writeWorldCSV(path string, recs []mmdbbuild.Record) error {
	var b strings.Builder
	b.WriteString("network,country,continent,latitude,longitude,asn,as_org\n")
	for _, r := range recs {
		fmt.Fprintf(&b, "%s,%s,%s,%g,%g,%d,%s\n", r.Network, r.Country, r.Continent, *r.Lat, *r.Lon, r.ASN, r.ASOrg)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// parseKV reads a line "WORD k=v k=v ..." into a map.
func parseKV(line string) map[string]string {
	m := map[string]string{}
	for _, f := range strings.Fields(line)[1:] {
		if k, v, ok := strings.Cut(f, "="); ok {
			m[k] = v
		}
	}
	return m
}
