package transport

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/hkdf"
)

// The KCP transport runs over an authenticated packet layer. kcp-go's own
// BlockCrypt is confidentiality plus a CRC: anyone can flip bits, replay
// packets or open sessions. Every UDP packet below KCP is therefore one of:
//
//	HELLO  0x01 | unix nanos (8) | client random (32) | HMAC-SHA256 (32)
//	ACK    0x02 | client random (32) | server random (32) | HMAC-SHA256 (32)
//	DATA   0x03 | counter (8) | ChaCha20-Poly1305(session key, nonce = dir|counter, AAD = 0x03|counter)
//
// The HMAC key and the session keys are derived with HKDF-SHA256 from the
// cluster key; session keys also mix in both randoms, so every session has
// fresh keys and a recorded session cannot be replayed into a new one. DATA
// counters are checked against a sliding window (replays and forgeries are
// dropped before KCP sees them). relay/TUNNEL.md has the full design.

const (
	pktHello = 0x01
	pktAck   = 0x02
	pktData  = 0x03

	helloLen      = 1 + 8 + 32 + 32
	ackLen        = 1 + 32 + 32 + 32
	dataHeaderLen = 1 + 8
	// SealOverhead is what the packet layer adds to every KCP packet.
	SealOverhead = dataHeaderLen + chacha20poly1305.Overhead

	helloMaxSkew = 30 * time.Second
	replayWindow = 4096
)

// Errors of the packet layer.
var (
	ErrHandshake = errors.New("kcp seal: handshake failed")
)

// sealKeys holds what is derived from the cluster key.
type sealKeys struct {
	hello []byte
	base  []byte
}

func deriveKeys(clusterKey []byte) (*sealKeys, error) {
	if len(clusterKey) < 16 {
		return nil, errors.New("kcp seal: cluster key must be at least 16 bytes")
	}
	k := &sealKeys{hello: make([]byte, 32), base: make([]byte, 32)}
	if _, err := io.ReadFull(hkdf.New(sha256.New, clusterKey, []byte("longlink-kcp-v1"), []byte("hello")), k.hello); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(hkdf.New(sha256.New, clusterKey, []byte("longlink-kcp-v1"), []byte("session")), k.base); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *sealKeys) mac(parts ...[]byte) []byte {
	m := hmac.New(sha256.New, k.hello)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// session is one authenticated peer: keys for each direction and the replay
// window for what it sends.
type session struct {
	send, recv cipher.AEAD
	sendDir    byte
	counter    atomic.Uint64 // DATA packets sealed: the last counter used
	sentBytes  atomic.Uint64
	recvPkts   atomic.Uint64 // DATA packets accepted
	recvBytes  atomic.Uint64
	mu         sync.Mutex
	window     replay
	lastSeen   atomic.Int64
	clientRand [32]byte
	ackPacket  []byte // the server's ACK, resent when a HELLO is retransmitted
}

func newSession(k *sealKeys, cr, sr []byte, client bool) (*session, error) {
	salt := append(append([]byte{}, cr...), sr...)
	c2s := make([]byte, chacha20poly1305.KeySize)
	s2c := make([]byte, chacha20poly1305.KeySize)
	if _, err := io.ReadFull(hkdf.New(sha256.New, k.base, salt, []byte("c2s")), c2s); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(hkdf.New(sha256.New, k.base, salt, []byte("s2c")), s2c); err != nil {
		return nil, err
	}
	a, _ := chacha20poly1305.New(c2s)
	b, _ := chacha20poly1305.New(s2c)
	s := &session{}
	copy(s.clientRand[:], cr)
	if client {
		s.send, s.recv, s.sendDir = a, b, 0
	} else {
		s.send, s.recv, s.sendDir = b, a, 1
	}
	s.lastSeen.Store(time.Now().UnixNano())
	return s, nil
}

func (s *session) seal(dst, p []byte) []byte {
	ctr := s.counter.Add(1)
	dst = append(dst, pktData)
	dst = binary.BigEndian.AppendUint64(dst, ctr)
	var nonce [12]byte
	nonce[0] = s.sendDir
	binary.BigEndian.PutUint64(nonce[4:], ctr)
	s.sentBytes.Add(uint64(len(p) + SealOverhead))
	return s.send.Seal(dst, nonce[:], p, dst[len(dst)-dataHeaderLen:])
}

// open authenticates and decrypts a DATA packet into dst.
func (s *session) open(dst, pkt []byte) ([]byte, bool) {
	if len(pkt) < SealOverhead {
		return nil, false
	}
	ctr := binary.BigEndian.Uint64(pkt[1:9])
	var nonce [12]byte
	nonce[0] = 1 - s.sendDir
	binary.BigEndian.PutUint64(nonce[4:], ctr)
	out, err := s.recv.Open(dst, nonce[:], pkt[dataHeaderLen:], pkt[:dataHeaderLen])
	if err != nil {
		return nil, false
	}
	s.mu.Lock()
	fresh := s.window.check(ctr)
	s.mu.Unlock()
	if !fresh {
		return nil, false
	}
	s.lastSeen.Store(time.Now().UnixNano())
	s.recvPkts.Add(1)
	s.recvBytes.Add(uint64(len(pkt)))
	return out, true
}

// count adds the session's packet and byte counts to st.
func (s *session) count(st *ConnStats) {
	st.PacketsSent = s.counter.Load()
	st.BytesSent = s.sentBytes.Load()
	st.PacketsReceived = s.recvPkts.Load()
	st.BytesReceived = s.recvBytes.Load()
}

// replay is a sliding-window replay filter (RFC 6479 style, bit per counter).
type replay struct {
	top  uint64
	bits [replayWindow / 64]uint64
}

func (r *replay) check(ctr uint64) bool {
	if ctr == 0 {
		return false
	}
	if ctr > r.top {
		// Clear the words that slide into the window.
		diff := ctr/64 - r.top/64
		if diff > uint64(len(r.bits)) {
			diff = uint64(len(r.bits))
		}
		for i := uint64(1); i <= diff; i++ {
			r.bits[(r.top/64+i)%uint64(len(r.bits))] = 0
		}
		r.top = ctr
	} else if r.top-ctr >= replayWindow-64 {
		return false
	}
	w := &r.bits[(ctr/64)%uint64(len(r.bits))]
	bit := uint64(1) << (ctr % 64)
	if *w&bit != 0 {
		return false
	}
	*w |= bit
	return true
}

// pktPool holds buffers for sealed packets waiting in the batch writer.
var pktPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// SealStats counts what the packet layer rejected.
type SealStats struct {
	Rejected atomic.Uint64 // bad MAC, bad AEAD tag, replay, stale hello, unknown peer
	// GSOFallbacks counts sockets whose kernel or device refused UDP
	// segmentation; they send one packet per message from then on.
	GSOFallbacks atomic.Uint64
}

// clientSealConn is the dialer's packet layer: one peer, one session.
type clientSealConn struct {
	net.PacketConn
	peer  net.Addr
	sess  *session
	stats *SealStats
	rd    *batchReader
	wr    *batchWriter
}

// dialSeal runs the HELLO/ACK handshake with the peer at raddr over pc.
func dialSeal(ctx context.Context, deadline time.Time, pc net.PacketConn, raddr net.Addr, k *sealKeys, stats *SealStats) (*clientSealConn, error) {
	var cr [32]byte
	_, _ = rand.Read(cr[:])
	hello := make([]byte, 0, helloLen)
	hello = append(hello, pktHello)
	hello = binary.BigEndian.AppendUint64(hello, uint64(time.Now().UnixNano()))
	hello = append(hello, cr[:]...)
	hello = append(hello, k.mac(hello)...)
	buf := make([]byte, 2048)
	defer func() { _ = pc.SetReadDeadline(time.Time{}) }()
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrHandshake, err)
		}
		if _, err := pc.WriteTo(hello, raddr); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrHandshake, err)
		}
		wait := time.Now().Add(time.Duration(200*(attempt+1)) * time.Millisecond)
		if wait.After(deadline) {
			wait = deadline
		}
		_ = pc.SetReadDeadline(wait)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return nil, fmt.Errorf("%w: %w", ErrHandshake, err)
			}
			p := buf[:n]
			if from.String() != raddr.String() || n != ackLen || p[0] != pktAck || !bytes.Equal(p[1:33], cr[:]) ||
				!hmac.Equal(p[65:], k.mac(p[:65])) {
				stats.Rejected.Add(1)
				continue
			}
			s, err := newSession(k, cr[:], p[33:65], true)
			if err != nil {
				return nil, err
			}
			return &clientSealConn{PacketConn: pc, peer: raddr, sess: s, stats: stats, rd: newBatchReader(pc), wr: newBatchWriter(pc, stats)}, nil
		}
	}
	return nil, fmt.Errorf("%w: no authenticated answer from %s (wrong cluster key or peer down)", ErrHandshake, raddr)
}

func (c *clientSealConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		pkt, from, err := c.rd.next()
		if err != nil {
			return 0, nil, err
		}
		if n, ok := c.input(p, pkt, from); ok {
			return n, from, nil
		}
	}
}

// input checks one packet from the network and decrypts it into p.
func (c *clientSealConn) input(p, pkt []byte, from net.Addr) (int, bool) {
	if len(pkt) < 1 || pkt[0] != pktData || !sameAddr(from, c.peer) {
		c.stats.Rejected.Add(1)
		return 0, false
	}
	out, ok := c.sess.open(p[:0], pkt)
	if !ok {
		c.stats.Rejected.Add(1)
		return 0, false
	}
	return len(out), true
}

func (c *clientSealConn) WriteTo(p []byte, _ net.Addr) (int, error) {
	bp := pktPool.Get().(*[]byte)
	*bp = c.sess.seal((*bp)[:0], p)
	if err := c.wr.send(bp, c.peer); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close stops the writer and closes the socket.
func (c *clientSealConn) Close() error {
	c.wr.close()
	return c.PacketConn.Close()
}

// serverSealConn is the listener's packet layer: it answers HELLOs and keeps
// one session per peer address. KCP sees only authenticated plaintext.
type serverSealConn struct {
	net.PacketConn
	keys  *sealKeys
	stats *SealStats
	rd    *batchReader
	wr    *batchWriter

	mu       sync.Mutex
	sessions map[netip.AddrPort]*session
	seen     map[[32]byte]time.Time // client randoms of recent HELLOs
}

func newServerSeal(pc net.PacketConn, k *sealKeys, stats *SealStats) *serverSealConn {
	return &serverSealConn{PacketConn: pc, keys: k, stats: stats, rd: newBatchReader(pc), wr: newBatchWriter(pc, stats), sessions: map[netip.AddrPort]*session{}, seen: map[[32]byte]time.Time{}}
}

func (c *serverSealConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		pkt, from, err := c.rd.next()
		if err != nil {
			return 0, nil, err
		}
		if n, ok := c.input(p, pkt, from); ok {
			return n, from, nil
		}
	}
}

// input handles one packet from the network: a HELLO is answered, a DATA
// packet of a known peer is checked and decrypted into p (ok), anything
// else is dropped.
func (c *serverSealConn) input(p, pkt []byte, from net.Addr) (int, bool) {
	if len(pkt) < 1 {
		return 0, false
	}
	switch pkt[0] {
	case pktHello:
		c.handleHello(pkt, from)
	case pktData:
		c.mu.Lock()
		s := c.sessions[addrKey(from)]
		c.mu.Unlock()
		if s == nil {
			c.stats.Rejected.Add(1)
			return 0, false
		}
		out, ok := s.open(p[:0], pkt)
		if !ok {
			c.stats.Rejected.Add(1)
			return 0, false
		}
		return len(out), true
	default:
		c.stats.Rejected.Add(1)
	}
	return 0, false
}

func (c *serverSealConn) handleHello(pkt []byte, from net.Addr) {
	if len(pkt) != helloLen || !hmac.Equal(pkt[41:], c.keys.mac(pkt[:41])) {
		c.stats.Rejected.Add(1)
		return
	}
	ts := time.Unix(0, int64(binary.BigEndian.Uint64(pkt[1:9])))
	now := time.Now()
	if d := now.Sub(ts); d > helloMaxSkew || d < -helloMaxSkew {
		c.stats.Rejected.Add(1)
		return
	}
	var cr [32]byte
	copy(cr[:], pkt[9:41])
	key := addrKey(from)
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.sessions[key]; s != nil && s.clientRand == cr {
		// The client did not get our ACK: send the same one again.
		_, _ = c.PacketConn.WriteTo(s.ackPacket, from)
		return
	}
	if _, dup := c.seen[cr]; dup {
		c.stats.Rejected.Add(1) // a replayed HELLO
		return
	}
	for r, t := range c.seen {
		if now.Sub(t) > 2*helloMaxSkew {
			delete(c.seen, r)
		}
	}
	for a, s := range c.sessions {
		if now.UnixNano()-s.lastSeen.Load() > int64(10*time.Minute) {
			delete(c.sessions, a)
		}
	}
	c.seen[cr] = now
	var sr [32]byte
	_, _ = rand.Read(sr[:])
	s, err := newSession(c.keys, cr[:], sr[:], false)
	if err != nil {
		return
	}
	ack := make([]byte, 0, ackLen)
	ack = append(ack, pktAck)
	ack = append(ack, cr[:]...)
	ack = append(ack, sr[:]...)
	ack = append(ack, c.keys.mac(ack)...)
	s.ackPacket = ack
	c.sessions[key] = s
	_, _ = c.PacketConn.WriteTo(ack, from)
}

func (c *serverSealConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	c.mu.Lock()
	s := c.sessions[addrKey(addr)]
	c.mu.Unlock()
	if s == nil {
		return len(p), nil // peer gone: drop, as the network would
	}
	bp := pktPool.Get().(*[]byte)
	*bp = s.seal((*bp)[:0], p)
	if err := c.wr.send(bp, addr); err != nil {
		return 0, err
	}
	return len(p), nil
}

// session is the current session of the peer at addr, nil when none.
func (c *serverSealConn) session(addr net.Addr) *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sessions[addrKey(addr)]
}

// Close stops the writer and closes the socket.
func (c *serverSealConn) Close() error {
	c.wr.close()
	return c.PacketConn.Close()
}

// addrKey is a peer's map key (no allocation for UDP addresses).
func addrKey(a net.Addr) netip.AddrPort {
	if ua, ok := a.(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func sameAddr(a, b net.Addr) bool {
	ua, ok1 := a.(*net.UDPAddr)
	ub, ok2 := b.(*net.UDPAddr)
	if ok1 && ok2 {
		return ua.Port == ub.Port && ua.IP.Equal(ub.IP)
	}
	return a.String() == b.String()
}
