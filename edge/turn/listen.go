package turn

import (
	"context"
	"log/slog"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// listenUDPReusePort binds n sockets to one address with SO_REUSEPORT, each
// read by its own goroutine and holding its own allocation table.
//
// The kernel's default spreads datagrams by 4-tuple hash, which would send a
// client's second socket (its RTCP allocation, carrying the RESERVATION-TOKEN
// of the first) to another table. So a classic BPF program steers by the
// client's IP address instead: every socket of one client lands on the same
// table, and many clients still spread over all sockets.
func listenUDPReusePort(ctx context.Context, log *slog.Logger, addr string, n int) ([]net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	var out []net.PacketConn
	fail := func(err error) ([]net.PacketConn, error) {
		for _, o := range out {
			_ = o.Close()
		}
		return nil, err
	}
	for i := 0; i < n; i++ {
		c, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return fail(err)
		}
		if uc, ok := c.(*net.UDPConn); ok {
			_ = uc.SetReadBuffer(4 << 20)
			_ = uc.SetWriteBuffer(4 << 20)
		}
		out = append(out, c)
		addr = c.LocalAddr().String() // a port-0 address becomes concrete
	}
	if n > 1 {
		ip := out[0].LocalAddr().(*net.UDPAddr).IP
		if err := steerByClientIP(out[0].(*net.UDPConn), ip.To4() == nil, n); err != nil {
			log.Warn("cannot steer UDP sockets by client address; RESERVATION-TOKEN may fail across sockets", "addr", addr, "err", err)
		}
	}
	return out, nil
}

// skfNetOff is SKF_NET_OFF: BPF loads relative to the network header.
const skfNetOff = -0x100000

// steerByClientIP attaches a reuseport program to the socket group:
// socket index = hash(source address word) mod n.
func steerByClientIP(c *net.UDPConn, ipv6 bool, n int) error {
	off := int32(skfNetOff + 12) // IPv4 source address
	if ipv6 {
		off = skfNetOff + 20 // last word of the IPv6 source address
	}
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: uint32(off)},
		{Code: unix.BPF_ALU | unix.BPF_MUL | unix.BPF_K, K: 0x9E3779B1},
		{Code: unix.BPF_ALU | unix.BPF_RSH | unix.BPF_K, K: 16},
		{Code: unix.BPF_ALU | unix.BPF_MOD | unix.BPF_K, K: uint32(n)},
		{Code: unix.BPF_RET | unix.BPF_A},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: (*unix.SockFilter)(unsafe.Pointer(&filter[0]))}
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &prog)
	}); err != nil {
		return err
	}
	return serr
}
