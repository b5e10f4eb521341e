// Package packet reads the few fields of an IP header that the emulator routes
// on. It only looks at bytes; it opens no sockets.
package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Header is the routing-relevant part of an IPv4 header.
type Header struct {
	Src, Dst netip.Addr
	Protocol uint8
	// Length is the packet's total length as the header states it.
	Length int
}

// Errors returned by Parse; callers count them by kind.
var (
	ErrShort      = errors.New("packet shorter than an IPv4 header")
	ErrNotIPv4    = errors.New("not IPv4")
	ErrBadHeader  = errors.New("bad IPv4 header length")
	ErrBadLength  = errors.New("IPv4 total length does not match the packet")
	ErrBadAddress = errors.New("unroutable IPv4 address")
)

// Parse reads the header of the IPv4 packet b (as read from a TUN device
// without packet information). It checks that the header's lengths are
// consistent with len(b) so that a route is never chosen from garbage.
func Parse(b []byte) (Header, error) {
	if len(b) < 20 {
		return Header{}, ErrShort
	}
	if v := b[0] >> 4; v != 4 {
		return Header{}, fmt.Errorf("%w: version %d", ErrNotIPv4, v)
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 || ihl > len(b) {
		return Header{}, fmt.Errorf("%w: %d bytes", ErrBadHeader, ihl)
	}
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if total < ihl || total > len(b) {
		return Header{}, fmt.Errorf("%w: header says %d, have %d", ErrBadLength, total, len(b))
	}
	h := Header{
		Src:      netip.AddrFrom4([4]byte(b[12:16])),
		Dst:      netip.AddrFrom4([4]byte(b[16:20])),
		Protocol: b[9],
		Length:   total,
	}
	if h.Dst.IsUnspecified() || h.Dst.IsMulticast() || h.Dst == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return Header{}, fmt.Errorf("%w: destination %s", ErrBadAddress, h.Dst)
	}
	return h, nil
}
