// Package wire is the tunnel wire format shared by edges, relays and the core
// egress: the header that opens every tunnel stream, the one-frame status
// answer, the datagram framing of UDP flows and the probe frames. It has no
// sockets; relay/TUNNEL.md is its specification.
package wire

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// Version is the header version this package writes and reads.
const Version = 1

// Limits of the variable fields. A header that breaks one is rejected.
const (
	MaxNameLen     = 63  // cluster and service names
	MaxAffinityLen = 128 // sticky key (a Socket.IO sid)
	MaxHeaderLen   = 8 + 16 + 4 + 1 + 16 + 2 + 1 + MaxNameLen + 1 + MaxNameLen + 1 + MaxAffinityLen + 2
	MaxHops        = 16 // largest hop budget a sender may set
	MaxReasonLen   = 255
	// DatagramOverhead is what a UDP flow adds in front of each payload.
	DatagramOverhead = 4
	// SeqLen is what a numbered UDP flow adds after the flow id: the
	// datagram's sequence number, which pairs its copies.
	SeqLen = 4
	// MaxCopies is how many copies a sequenced stream may have at once.
	MaxCopies = 4
)

// Header flags (byte 5). The other bits are reserved and must be 0.
const (
	flagSequenced = 0x01 // the stream is one copy of a sequenced stream
	copyShift     = 1    // bits 1-2: the copy's slot
	copyMask      = MaxCopies - 1
	flagJoin      = 0x08 // the copy joins a flow an earlier copy opened
	flagNumbered  = 0x10 // a udp flow whose datagrams carry a sequence number
	flagSmall     = 0x20 // the copy carries only small records or datagrams; 2 bytes end the body
	knownFlags    = flagSequenced | copyMask<<copyShift | flagJoin | flagNumbered | flagSmall
)

var magic = [2]byte{'L', 'T'}

// Kind is the protocol a tunnel stream carries.
type Kind uint8

// Kinds. A stream's kind tells the egress how to reach the service.
const (
	KindLink  Kind = 1 // Link protocol over TCP: bytes spliced to a TCP target
	KindHTTP  Kind = 2 // WebLink HTTP/WebSocket: bytes spliced to an HTTP target
	KindUDP   Kind = 3 // a UDP flow: the stream is its control channel, data rides datagrams
	KindProbe Kind = 4 // path probe between two adjacent nodes; never forwarded
	// KindLinkFrames carries a Link connection that the edge terminated:
	// plaintext Link frames, spliced to a gateway's pre-terminated listener.
	KindLinkFrames Kind = 5
)

func (k Kind) String() string {
	switch k {
	case KindLink:
		return "link"
	case KindHTTP:
		return "http"
	case KindUDP:
		return "udp"
	case KindProbe:
		return "probe"
	case KindLinkFrames:
		return "link-frames"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ParseKind is the inverse of Kind.String for the kinds a service can have.
func ParseKind(s string) (Kind, error) {
	switch s {
	case "link", "tcp":
		return KindLink, nil
	case "http", "weblink":
		return KindHTTP, nil
	case "udp":
		return KindUDP, nil
	case "link-frames":
		return KindLinkFrames, nil
	}
	return 0, fmt.Errorf("unknown kind %q (want link, link-frames, http or udp)", s)
}

// TraceID follows one client flow across every hop and into the logs.
type TraceID [16]byte

// NewTraceID returns a random trace id.
func NewTraceID() TraceID {
	var t TraceID
	_, _ = rand.Read(t[:])
	return t
}

func (t TraceID) String() string { return hex.EncodeToString(t[:]) }

// Header opens every tunnel stream.
type Header struct {
	Kind     Kind
	Hops     uint8 // remaining hop budget; each forwarding node decrements it
	Flow     uint32
	Trace    TraceID
	Client   netip.AddrPort // the client's original address, as the edge saw it
	Cluster  string         // destination cluster
	Service  string         // service at the destination (link, weblink, media…)
	Affinity string         // optional sticky key; empty when unused
	// Sequenced marks one copy of a sequenced stream: the payload is
	// frames (numbered records and control frames, AppendRecord), the
	// egress merges every copy with the same Trace into one flow, and a
	// copy that dies can be replaced on another path. TUNNEL.md,
	// "Sequenced streams".
	Sequenced bool
	// Copy is the copy's slot, below MaxCopies; 0 unless Sequenced.
	Copy uint8
	// Join marks a copy of a flow that an earlier copy opened: the egress
	// joins it to that flow and never opens one for it. Only when
	// Sequenced or Numbered.
	Join bool
	// Numbered marks one copy of a udp flow whose datagrams carry a
	// sequence number after the flow id (AppendNumbered): the egress pairs
	// the copies with the same Trace into one flow and delivers each
	// datagram once, from the copy that brings it first.
	Numbered bool
	// Small, when not 0, makes the copy carry only records (Sequenced) or
	// datagrams (Numbered) of at most Small bytes, both ways: the copy on
	// a disjoint path, which doubles small frames and not bulk. TUNNEL.md,
	// "Disjoint copies".
	Small uint16
}

// Sequenced marks the kinds a stream may be sequenced for: the byte-stream
// kinds the egress splices to a TCP service.
func (k Kind) Sequenced() bool {
	return k == KindLink || k == KindHTTP || k == KindLinkFrames
}

// Errors returned by ReadHeader and Validate.
var (
	ErrBadMagic   = errors.New("wire: not a tunnel header")
	ErrVersion    = errors.New("wire: unsupported header version")
	ErrMalformed  = errors.New("wire: malformed header")
	ErrHopsExceed = errors.New("wire: hop budget exhausted")
)

// Validate checks the limits of every field.
func (h *Header) Validate() error {
	switch h.Kind {
	case KindLink, KindHTTP, KindUDP, KindProbe, KindLinkFrames:
	default:
		return fmt.Errorf("%w: kind %d", ErrMalformed, h.Kind)
	}
	if h.Hops > MaxHops {
		return fmt.Errorf("%w: hop budget %d > %d", ErrMalformed, h.Hops, MaxHops)
	}
	if len(h.Cluster) > MaxNameLen || len(h.Service) > MaxNameLen || len(h.Affinity) > MaxAffinityLen {
		return fmt.Errorf("%w: name too long", ErrMalformed)
	}
	if h.Kind != KindProbe && (h.Cluster == "" || h.Service == "") {
		return fmt.Errorf("%w: cluster and service required", ErrMalformed)
	}
	if h.Client.IsValid() && h.Client.Addr().Zone() != "" {
		return fmt.Errorf("%w: zoned client address", ErrMalformed)
	}
	copied := h.Sequenced || h.Numbered
	if h.Copy >= MaxCopies || (h.Copy != 0 || h.Join || h.Small != 0) && !copied {
		return fmt.Errorf("%w: copy %d, join %v, small %d of a stream that is neither sequenced nor numbered", ErrMalformed, h.Copy, h.Join, h.Small)
	}
	if h.Sequenced && !h.Kind.Sequenced() {
		return fmt.Errorf("%w: kind %s cannot be sequenced", ErrMalformed, h.Kind)
	}
	if h.Numbered && h.Kind != KindUDP {
		return fmt.Errorf("%w: kind %s cannot be numbered", ErrMalformed, h.Kind)
	}
	if h.Small > MaxRecordLen {
		return fmt.Errorf("%w: small %d > %d", ErrMalformed, h.Small, MaxRecordLen)
	}
	return nil
}

func (h *Header) flags() byte {
	var f byte
	if h.Sequenced {
		f |= flagSequenced
	}
	if h.Numbered {
		f |= flagNumbered
	}
	f |= h.Copy << copyShift
	if h.Join {
		f |= flagJoin
	}
	if h.Small != 0 {
		f |= flagSmall
	}
	return f
}

// AppendHeader appends h's encoding to b.
func AppendHeader(b []byte, h *Header) ([]byte, error) {
	if err := h.Validate(); err != nil {
		return b, err
	}
	start := len(b)
	b = append(b, magic[0], magic[1], Version, byte(h.Kind), h.Hops, h.flags(), 0, 0)
	b = append(b, h.Trace[:]...)
	b = binary.BigEndian.AppendUint32(b, h.Flow)
	switch {
	case !h.Client.IsValid():
		b = append(b, 0)
	case h.Client.Addr().Is4() || h.Client.Addr().Is4In6():
		a := h.Client.Addr().Unmap().As4()
		b = append(b, 4)
		b = append(b, a[:]...)
		b = binary.BigEndian.AppendUint16(b, h.Client.Port())
	default:
		a := h.Client.Addr().As16()
		b = append(b, 6)
		b = append(b, a[:]...)
		b = binary.BigEndian.AppendUint16(b, h.Client.Port())
	}
	for _, s := range []string{h.Cluster, h.Service, h.Affinity} {
		b = append(b, byte(len(s)))
		b = append(b, s...)
	}
	if h.Small != 0 {
		b = binary.BigEndian.AppendUint16(b, h.Small)
	}
	binary.BigEndian.PutUint16(b[start+6:], uint16(len(b)-start-8))
	return b, nil
}

// ReadHeader reads one header from r. It never reads past the header, so the
// stream's payload stays in r.
func ReadHeader(r io.Reader) (*Header, error) {
	var fixed [8]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return nil, fmt.Errorf("wire: read header: %w", err)
	}
	if fixed[0] != magic[0] || fixed[1] != magic[1] {
		return nil, ErrBadMagic
	}
	if fixed[2] != Version {
		return nil, fmt.Errorf("%w: %d", ErrVersion, fixed[2])
	}
	n := int(binary.BigEndian.Uint16(fixed[6:]))
	if n > MaxHeaderLen-8 {
		return nil, fmt.Errorf("%w: length %d", ErrMalformed, n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("wire: read header body: %w", err)
	}
	return decodeBody(fixed, body)
}

// DecodeHeader decodes a header held entirely in b and returns the number of
// bytes it used.
func DecodeHeader(b []byte) (*Header, int, error) {
	if len(b) < 8 {
		return nil, 0, fmt.Errorf("%w: short", ErrMalformed)
	}
	var fixed [8]byte
	copy(fixed[:], b)
	if fixed[0] != magic[0] || fixed[1] != magic[1] {
		return nil, 0, ErrBadMagic
	}
	if fixed[2] != Version {
		return nil, 0, fmt.Errorf("%w: %d", ErrVersion, fixed[2])
	}
	n := int(binary.BigEndian.Uint16(fixed[6:]))
	if n > MaxHeaderLen-8 || len(b) < 8+n {
		return nil, 0, fmt.Errorf("%w: length %d", ErrMalformed, n)
	}
	h, err := decodeBody(fixed, b[8:8+n])
	return h, 8 + n, err
}

func decodeBody(fixed [8]byte, body []byte) (*Header, error) {
	flags := fixed[5]
	if flags&^knownFlags != 0 {
		return nil, fmt.Errorf("%w: reserved flags set", ErrMalformed)
	}
	h := &Header{Kind: Kind(fixed[3]), Hops: fixed[4], Sequenced: flags&flagSequenced != 0, Copy: flags >> copyShift & copyMask,
		Join: flags&flagJoin != 0, Numbered: flags&flagNumbered != 0}
	if len(body) < 16+4+1 {
		return nil, fmt.Errorf("%w: short body", ErrMalformed)
	}
	copy(h.Trace[:], body)
	h.Flow = binary.BigEndian.Uint32(body[16:])
	fam := body[20]
	rest := body[21:]
	switch fam {
	case 0:
	case 4:
		if len(rest) < 6 {
			return nil, fmt.Errorf("%w: short address", ErrMalformed)
		}
		h.Client = netip.AddrPortFrom(netip.AddrFrom4([4]byte(rest[:4])), binary.BigEndian.Uint16(rest[4:]))
		rest = rest[6:]
	case 6:
		if len(rest) < 18 {
			return nil, fmt.Errorf("%w: short address", ErrMalformed)
		}
		a := netip.AddrFrom16([16]byte(rest[:16]))
		if a.Is4In6() {
			// The canonical form of a mapped address is family 4, which is
			// what AppendHeader writes; accepting both would give one header
			// two encodings.
			return nil, fmt.Errorf("%w: IPv4-mapped address in family 6", ErrMalformed)
		}
		h.Client = netip.AddrPortFrom(a, binary.BigEndian.Uint16(rest[16:]))
		rest = rest[18:]
	default:
		return nil, fmt.Errorf("%w: address family %d", ErrMalformed, fam)
	}
	var fields [3]string
	for i := range fields {
		if len(rest) < 1 || len(rest) < 1+int(rest[0]) {
			return nil, fmt.Errorf("%w: short field", ErrMalformed)
		}
		fields[i] = string(rest[1 : 1+int(rest[0])])
		rest = rest[1+int(rest[0]):]
	}
	if flags&flagSmall != 0 {
		if len(rest) < 2 {
			return nil, fmt.Errorf("%w: short small limit", ErrMalformed)
		}
		if h.Small = binary.BigEndian.Uint16(rest); h.Small == 0 {
			// Absent is the only encoding of "no limit".
			return nil, fmt.Errorf("%w: small limit 0", ErrMalformed)
		}
		rest = rest[2:]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(rest))
	}
	h.Cluster, h.Service, h.Affinity = fields[0], fields[1], fields[2]
	if err := h.Validate(); err != nil {
		return nil, err
	}
	return h, nil
}

// Status is the first thing the far end of a stream writes back: OK, or why
// the tunnel could not be opened.
type Status uint8

// Status codes.
const (
	StatusOK          Status = 0
	StatusNoRoute     Status = 1 // no path to the destination cluster
	StatusHops        Status = 2 // hop budget exhausted (a routing loop)
	StatusNoService   Status = 3 // the egress does not know the service
	StatusUnreachable Status = 4 // the egress could not connect to the service
	StatusRefused     Status = 5 // limits or draining
	StatusBadRequest  Status = 6 // malformed header
	// StatusGone: the flow a copy of a sequenced stream belongs to has
	// ended at this egress, or (a joining copy) it has no such flow. The
	// opener stops resuming the stream.
	StatusGone Status = 7
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusNoRoute:
		return "no route"
	case StatusHops:
		return "hop budget exhausted"
	case StatusNoService:
		return "unknown service"
	case StatusUnreachable:
		return "service unreachable"
	case StatusRefused:
		return "refused"
	case StatusBadRequest:
		return "bad request"
	case StatusGone:
		return "flow gone"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// StatusError is a non-OK status read from the far end.
type StatusError struct {
	Status Status
	Reason string
}

func (e *StatusError) Error() string {
	if e.Reason == "" {
		return "tunnel: " + e.Status.String()
	}
	return "tunnel: " + e.Status.String() + ": " + e.Reason
}

// AppendStatus appends a status frame: code, reason length, reason.
func AppendStatus(b []byte, s Status, reason string) []byte {
	if len(reason) > MaxReasonLen {
		reason = reason[:MaxReasonLen]
	}
	b = append(b, byte(s), byte(len(reason)))
	return append(b, reason...)
}

// ReadStatus reads a status frame; a non-OK status is returned as a
// *StatusError.
func ReadStatus(r io.Reader) error {
	var b [2]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return fmt.Errorf("wire: read status: %w", err)
	}
	reason := make([]byte, b[1])
	if _, err := io.ReadFull(r, reason); err != nil {
		return fmt.Errorf("wire: read status: %w", err)
	}
	if Status(b[0]) == StatusOK {
		return nil
	}
	return &StatusError{Status: Status(b[0]), Reason: string(reason)}
}

// AppendDatagram frames a UDP payload for flow id.
func AppendDatagram(b []byte, flow uint32, payload []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, flow)
	return append(b, payload...)
}

// ParseDatagram splits a tunnel datagram into its flow id and payload.
func ParseDatagram(b []byte) (flow uint32, payload []byte, err error) {
	if len(b) < DatagramOverhead {
		return 0, nil, fmt.Errorf("%w: short datagram", ErrMalformed)
	}
	return binary.BigEndian.Uint32(b), b[DatagramOverhead:], nil
}

// AppendNumbered frames a datagram of a numbered UDP flow (Header.Numbered):
// flow id, sequence number, payload. Relays read only the flow id.
func AppendNumbered(b []byte, flow, seq uint32, payload []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, flow)
	b = binary.BigEndian.AppendUint32(b, seq)
	return append(b, payload...)
}

// ParseNumbered splits the payload of a numbered flow's datagram (what
// ParseDatagram returned) into its sequence number and the UDP payload.
func ParseNumbered(b []byte) (seq uint32, payload []byte, err error) {
	if len(b) < SeqLen {
		return 0, nil, fmt.Errorf("%w: short numbered datagram", ErrMalformed)
	}
	return binary.BigEndian.Uint32(b), b[SeqLen:], nil
}

// ProbeLen is the size of a probe frame: sequence number and send time.
const ProbeLen = 16

// AppendProbe appends a probe frame.
func AppendProbe(b []byte, seq uint64, sentNanos int64) []byte {
	b = binary.BigEndian.AppendUint64(b, seq)
	return binary.BigEndian.AppendUint64(b, uint64(sentNanos))
}

// ParseProbe decodes a probe frame.
func ParseProbe(b []byte) (seq uint64, sentNanos int64, err error) {
	if len(b) != ProbeLen {
		return 0, 0, fmt.Errorf("%w: probe length %d", ErrMalformed, len(b))
	}
	return binary.BigEndian.Uint64(b), int64(binary.BigEndian.Uint64(b[8:])), nil
}

// Sequenced streams carry frames in both directions (TUNNEL.md, "Sequenced
// streams"): numbered records, the same on every copy, so that the receiver
// can deliver each once, from whichever copy brings it first, and a copy
// that replaces a dead one can start where the other end stands; and
// control frames, which are not numbered: acknowledgements (how many
// records of the other direction have arrived, so the sender can forget
// them) and seeks (the number of the next record on this copy).
const (
	// MaxRecordLen is the largest payload of one record.
	MaxRecordLen = 1<<15 - 1
	// RecordOverhead is what a record adds in front of its payload.
	RecordOverhead = 2
	// ControlLen is the size of a control frame.
	ControlLen = 2 + 1 + 8
	// CopyStartLen is the size of the copy start the egress writes after
	// the OK status of every copy.
	CopyStartLen = 16

	controlBit = 0x8000
	ctlAck     = 1
	ctlSeek    = 2
)

// FrameKind tells the frames of a sequenced stream apart.
type FrameKind uint8

// Frame kinds. Records and the end are numbered; acks and seeks are not.
const (
	FrameRecord FrameKind = iota // Payload: 1 to MaxRecordLen bytes of the stream
	FrameEnd                     // the sender ended the stream after the records before it
	FrameAck                     // Index: records of the other direction received (all below it)
	FrameSeek                    // Index: the number of the next record on this copy
)

// Frame is one decoded frame.
type Frame struct {
	Kind    FrameKind
	Payload []byte // FrameRecord: a new slice
	Index   uint64 // FrameAck, FrameSeek
}

// AppendRecord appends a record carrying payload, which must be 1 to
// MaxRecordLen bytes long (an empty record is the end record).
func AppendRecord(b, payload []byte) []byte {
	if len(payload) == 0 || len(payload) > MaxRecordLen {
		panic("wire: record payload must be 1..MaxRecordLen bytes")
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(payload)))
	return append(b, payload...)
}

// AppendEndRecord appends the end record.
func AppendEndRecord(b []byte) []byte { return append(b, 0, 0) }

// AppendAck appends an acknowledgement: every record below received of
// the other direction has arrived.
func AppendAck(b []byte, received uint64) []byte { return appendControl(b, ctlAck, received) }

// AppendSeek appends a seek: the next record on this copy is number next.
func AppendSeek(b []byte, next uint64) []byte { return appendControl(b, ctlSeek, next) }

func appendControl(b []byte, typ byte, v uint64) []byte {
	b = binary.BigEndian.AppendUint16(b, controlBit|(ControlLen-2))
	b = append(b, typ)
	return binary.BigEndian.AppendUint64(b, v)
}

// ReadFrame reads one frame from r.
func ReadFrame(r io.Reader) (Frame, error) {
	var l [RecordOverhead]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return Frame{}, fmt.Errorf("wire: read frame: %w", err)
	}
	n := binary.BigEndian.Uint16(l[:])
	switch {
	case n == 0:
		return Frame{Kind: FrameEnd}, nil
	case n&controlBit != 0:
		if n&^controlBit != ControlLen-2 {
			return Frame{}, fmt.Errorf("%w: control frame of %d bytes", ErrMalformed, n&^controlBit)
		}
		var c [ControlLen - 2]byte
		if _, err := io.ReadFull(r, c[:]); err != nil {
			return Frame{}, fmt.Errorf("wire: read frame: %w", err)
		}
		f := Frame{Index: binary.BigEndian.Uint64(c[1:])}
		switch c[0] {
		case ctlAck:
			f.Kind = FrameAck
		case ctlSeek:
			f.Kind = FrameSeek
		default:
			return Frame{}, fmt.Errorf("%w: control frame type %d", ErrMalformed, c[0])
		}
		return f, nil
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return Frame{}, fmt.Errorf("wire: read frame: %w", err)
	}
	return Frame{Kind: FrameRecord, Payload: p}, nil
}

// AppendFrame appends f's encoding (the inverse of ReadFrame).
func AppendFrame(b []byte, f Frame) []byte {
	switch f.Kind {
	case FrameEnd:
		return AppendEndRecord(b)
	case FrameAck:
		return AppendAck(b, f.Index)
	case FrameSeek:
		return AppendSeek(b, f.Index)
	}
	return AppendRecord(b, f.Payload)
}

// AppendCopyStart appends what the egress writes on a copy after its OK
// status: the flow's id (random per egress flow: copies whose ids differ
// reached different egresses and must not be merged) and the number of
// the first record this copy carries towards the opener (where the
// opener's received records end, when the copy replaces another).
func AppendCopyStart(b []byte, flow, first uint64) []byte {
	b = binary.BigEndian.AppendUint64(b, flow)
	return binary.BigEndian.AppendUint64(b, first)
}

// ParseCopyStart decodes a copy start.
func ParseCopyStart(b []byte) (flow, first uint64, err error) {
	if len(b) != CopyStartLen {
		return 0, 0, fmt.Errorf("%w: copy start length %d", ErrMalformed, len(b))
	}
	return binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:]), nil
}
