package transport

import (
	"errors"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDP segmentation offload (GSO, UDP_SEGMENT) and receive offload (GRO,
// UDP_GRO), Linux 4.18/5.0 and later. With GSO one sendmmsg entry carries a
// run of equal-sized sealed packets that the kernel (or the NIC) cuts apart;
// with GRO the kernel hands up such runs as one buffer plus the segment size.
// On loopback neither is ever cut: a run crosses the stack as one packet. The
// packets themselves are unchanged: each is still sealed on its own.

// offloadCapable reports whether the socket can send with UDP_SEGMENT and
// asks it to coalesce received packets (UDP_GRO).
func offloadCapable(uc *net.UDPConn) (gso, gro bool) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return false, false
	}
	_ = rc.Control(func(fd uintptr) {
		_, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		gso = err == nil
		gro = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil
	})
	return gso, gro
}

// gsoMaxSegments is the kernel's limit of segments per send (UDP_MAX_SEGMENTS).
const gsoMaxSegments = 64

// segmentCmsgLen is the size of a UDP_SEGMENT control message.
var segmentCmsgLen = unix.CmsgSpace(2)

// putSegmentCmsg writes a UDP_SEGMENT control message for segments of size
// bytes into b, which must hold segmentCmsgLen bytes, and returns it.
func putSegmentCmsg(b []byte, size int) []byte {
	b = b[:segmentCmsgLen]
	clear(b)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = unix.IPPROTO_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&b[unix.CmsgLen(0)])) = uint16(size)
	return b
}

// groCmsgSpace is what a reader must leave for the UDP_GRO control message.
var groCmsgSpace = unix.CmsgSpace(4)

// groSegmentSize returns the segment size the kernel reported in a UDP_GRO
// control message, or 0 when the buffer holds a single packet.
func groSegmentSize(oob []byte) int {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			return 0
		}
		if h.Level == unix.IPPROTO_UDP && h.Type == unix.UDP_GRO && l >= unix.CmsgLen(4) {
			return int(*(*int32)(unsafe.Pointer(&oob[unix.CmsgLen(0)])))
		}
		sp := unix.CmsgSpace(l - unix.CmsgLen(0))
		if sp > len(oob) {
			return 0
		}
		oob = oob[sp:]
	}
	return 0
}

// isGSOError reports a send the kernel refused because of segmentation (no
// TX checksum offload on the device: EIO; segment larger than the path
// MTU: EINVAL); the packets are then sent one by one.
func isGSOError(err error) bool {
	return errors.Is(err, unix.EIO) || errors.Is(err, unix.EINVAL)
}

// forceSocketBuffers sets the socket's buffers to want bytes regardless of
// net.core.rmem_max/wmem_max; it fails silently without CAP_NET_ADMIN.
func forceSocketBuffers(fd uintptr, want int) {
	_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, want)
	_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, want)
}
