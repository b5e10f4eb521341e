package lbs

import (
	"encoding/binary"
	"net/netip"

	"github.com/miekg/dns"
)

// dnsRequest is what an answer depends on in a query.
type dnsRequest struct {
	id               uint16
	opcode           int
	response, rd, cd bool
	questions        int          // how many the query asked
	q                dns.Question // the first, its name as sent
	edns             bool         // an OPT record came with it
	ednsVersion      uint8
	udpSize          uint16
	ecs              netip.Prefix // EDNS Client Subnet, masked; invalid if none
}

// queryOf takes a query decoded by miekg/dns apart.
func queryOf(req *dns.Msg) dnsRequest {
	q := dnsRequest{id: req.Id, opcode: req.Opcode, response: req.Response, rd: req.RecursionDesired,
		cd: req.CheckingDisabled, questions: len(req.Question)}
	if len(req.Question) > 0 {
		q.q = req.Question[0]
	}
	if opt := req.IsEdns0(); opt != nil {
		q.edns, q.ednsVersion, q.udpSize = true, opt.Version(), opt.UDPSize()
		for _, o := range opt.Option {
			if sub, ok := o.(*dns.EDNS0_SUBNET); ok {
				if a, ok := netip.AddrFromSlice(sub.Address); ok {
					q.ecs = ecsPrefix(a, int(sub.SourceNetmask))
				}
			}
		}
	}
	return q
}

func ecsPrefix(a netip.Addr, bits int) netip.Prefix {
	a = a.Unmap()
	return netip.PrefixFrom(a, min(bits, a.BitLen())).Masked()
}

// parseQuery decodes the usual shape of a query without the allocations of
// dns.Msg.Unpack: one question whose name holds only letters, digits, '-'
// and '_', no answer or authority records, and at most one OPT record whose
// options are Client Subnet (at most one), cookies or padding, ending exactly
// at the end of b. It reports false for anything else, and the caller then
// decodes with miekg/dns; for what it accepts it agrees with dns.Msg.Unpack
// (FuzzParseQuery checks that).
func parseQuery(b []byte, q *dnsRequest) bool {
	if len(b) < 12 {
		return false
	}
	bits := binary.BigEndian.Uint16(b[2:])
	qd, an, ns, ar := binary.BigEndian.Uint16(b[4:]), binary.BigEndian.Uint16(b[6:]), binary.BigEndian.Uint16(b[8:]), binary.BigEndian.Uint16(b[10:])
	if qd != 1 || an != 0 || ns != 0 || ar > 1 {
		return false
	}
	*q = dnsRequest{id: binary.BigEndian.Uint16(b), opcode: int(bits>>11) & 0xf, response: bits&0x8000 != 0,
		rd: bits&0x0100 != 0, cd: bits&0x0010 != 0, questions: 1}
	// the name, in presentation form; miekg/dns allows 254 octets of
	// labels and their length bytes
	var name [256]byte
	n, off, budget := 0, 12, 255
	for {
		if off >= len(b) {
			return false
		}
		c := int(b[off])
		off++
		if c == 0 {
			break
		}
		if c&0xc0 != 0 || off+c > len(b) {
			return false // a compression pointer, or a reserved or short label
		}
		if budget -= c + 1; budget <= 0 {
			return false
		}
		for _, ch := range b[off : off+c] {
			if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_') {
				return false
			}
		}
		n += copy(name[n:], b[off:off+c])
		name[n] = '.'
		n++
		off += c
	}
	if n == 0 || off+4 > len(b) {
		return false
	}
	q.q = dns.Question{Name: string(name[:n]), Qtype: binary.BigEndian.Uint16(b[off:]), Qclass: binary.BigEndian.Uint16(b[off+2:])}
	off += 4
	if ar == 0 {
		return off == len(b)
	}
	// the OPT record: root name, type, UDP size, extended rcode and
	// version, flags, options
	if off+11 > len(b) || b[off] != 0 || binary.BigEndian.Uint16(b[off+1:]) != dns.TypeOPT {
		return false
	}
	q.edns, q.udpSize, q.ednsVersion = true, binary.BigEndian.Uint16(b[off+3:]), b[off+6]
	rdlen := int(binary.BigEndian.Uint16(b[off+9:]))
	off += 11
	if off+rdlen != len(b) {
		return false
	}
	for off < len(b) {
		if off+4 > len(b) {
			return false
		}
		code, olen := binary.BigEndian.Uint16(b[off:]), int(binary.BigEndian.Uint16(b[off+2:]))
		off += 4
		if off+olen > len(b) {
			return false
		}
		o := b[off : off+olen]
		off += olen
		switch code {
		case dns.EDNS0COOKIE, dns.EDNS0PADDING:
		case dns.EDNS0SUBNET:
			if q.ecs.IsValid() || len(o) < 4 {
				return false
			}
			family, source, scope, addr := binary.BigEndian.Uint16(o), int(o[2]), int(o[3]), o[4:]
			var a netip.Addr
			switch {
			case family == 1 && source <= 32 && scope <= 32:
				var a4 [4]byte
				copy(a4[:], addr)
				a = netip.AddrFrom4(a4)
			case family == 2 && source <= 128 && scope <= 128:
				var a16 [16]byte
				copy(a16[:], addr)
				a = netip.AddrFrom16(a16)
			default:
				return false
			}
			q.ecs = ecsPrefix(a, source)
		default:
			return false
		}
	}
	return true
}
