package link

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/flynn/noise"

	"github.com/longlink/longlink/core/imapi"
)

// Conn is an established Link connection. ReadFrame must be called from one
// goroutine at a time; WriteFrame and WriteFrames may be called concurrently
// (writes are serialized so that nonces follow the order on the wire).
//
// An idle Conn holds no buffers: frames are read into a buffer allocated for
// that frame, through a pooled read-ahead buffer that is returned as soon as
// everything in it is consumed, and writes use pooled buffers.
type Conn struct {
	nc    net.Conn
	lim   Limits
	keyID string

	recv sealer // guarded by the one reader
	// Read-ahead: one read takes what the socket has (often a whole frame,
	// or several), instead of a read for the length and one for the rest.
	rbuf *[]byte // pooled; nil while nothing is buffered
	ra   []byte  // unread bytes in *rbuf
	rerr error   // sticky read error

	wmu    sync.Mutex
	send   sealer // guarded by wmu
	werr   error  // sticky write error
	closed atomic.Bool
	// sealed is false on a pre-terminated connection (NewPlain). Beside
	// closed it fills closed's padding: one size class less per Conn.
	sealed bool
	// tail is what a FrameWriter sealed but the socket did not take; it
	// goes out before anything else written on the connection.
	tail []byte
	raw  syscall.RawConn // for FrameWriter; nil when nc has no socket
}

func newConn(nc net.Conn, keyID string, send, recv *noise.CipherState, lim Limits) (*Conn, error) {
	c := &Conn{nc: nc, lim: lim.withDefaults(), keyID: keyID, sealed: true, raw: rawConn(nc)}
	var err error
	if c.send, err = newSealer(send); err != nil {
		return nil, err
	}
	if c.recv, err = newSealer(recv); err != nil {
		return nil, err
	}
	return c, nil
}

// rawConn is nc's socket for non-blocking writes, or nil.
func rawConn(nc net.Conn) syscall.RawConn {
	sc, ok := nc.(syscall.Conn)
	if !ok || !canTryWrite {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// NewPlain wraps nc as a pre-terminated Link connection (LINK.md section 7):
// the same length-prefixed frames without a handshake and without sealing.
// It is only for hops whose confidentiality and integrity something else
// provides: an edge that terminated the client's handshake speaks it to the
// gateway through an encrypted tunnel and the core egress.
func NewPlain(nc net.Conn, lim Limits) *Conn {
	return &Conn{nc: nc, lim: lim.withDefaults(), raw: rawConn(nc)}
}

// Plain reports whether the connection is pre-terminated (not sealed).
func (c *Conn) Plain() bool { return !c.sealed }

// overhead is the bytes a sealed frame adds to its plaintext.
func (c *Conn) overhead() int {
	if !c.sealed {
		return 0
	}
	return tagSize
}

// KeyID is the id of the server key the handshake used.
func (c *Conn) KeyID() string { return c.keyID }

// NetConn is the underlying connection (for deadlines and addresses).
func (c *Conn) NetConn() net.Conn { return c.nc }

// Limits are the connection's limits with defaults applied.
func (c *Conn) Limits() Limits { return c.lim }

// Close closes the underlying connection. It is safe to call more than once.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	return c.nc.Close()
}

// ReadFrame reads, authenticates and decodes the next frame. Any error is
// final: the caller must close the connection.
func (c *Conn) ReadFrame() (Frame, error) {
	if c.rerr != nil {
		return Frame{}, c.rerr
	}
	f, err := c.readFrame()
	if err != nil {
		c.rerr = err
	}
	return f, err
}

// Buffered is how many bytes were read from the connection but not yet
// returned as frames: a reader with Buffered() > 0 has input without
// waiting for the socket.
func (c *Conn) Buffered() int { return len(c.ra) }

// FrameReady reports whether ReadFrame would return without reading the
// socket: the read-ahead holds a whole frame, or what it holds already
// fails (a bad length), or the connection has failed.
func (c *Conn) FrameReady() bool {
	if c.rerr != nil {
		return true
	}
	if len(c.ra) < 4 {
		return false
	}
	n := int(binary.BigEndian.Uint32(c.ra))
	if n > c.lim.MaxFrameSize+c.overhead() || n < HeaderSize+c.overhead() {
		return true
	}
	return len(c.ra) >= 4+n
}

// ReadAhead reads once from the socket into the read-ahead (blocking as
// Read does: call it when the socket is readable). It returns false, having
// read nothing, when the read-ahead is full: the next frame is larger, and
// ReadFrame reads its rest itself. A read error is final, as ReadFrame's:
// call it only when FrameReady is false, so that no buffered frame is lost
// behind the error.
func (c *Conn) ReadAhead() (bool, error) {
	if c.rerr != nil {
		return false, c.rerr
	}
	if len(c.ra) >= readAhead {
		return false, nil
	}
	if err := c.fill(len(c.ra) + 1); err != nil {
		c.rerr = err
		return false, err
	}
	return true, nil
}

const readAhead = 4096

var readPool = sync.Pool{New: func() any { b := make([]byte, readAhead); return &b }}

// fill reads until at least n bytes (n <= readAhead) are buffered. Like
// io.ReadFull it returns io.EOF when the connection ends before any byte,
// io.ErrUnexpectedEOF when it ends within them.
func (c *Conn) fill(n int) error {
	for len(c.ra) < n {
		if c.rbuf == nil {
			c.rbuf = readPool.Get().(*[]byte)
		}
		b := (*c.rbuf)[:cap(*c.rbuf)]
		m := copy(b, c.ra)
		k, err := c.nc.Read(b[m:])
		c.ra = b[:m+k]
		if err != nil && len(c.ra) < n {
			if err == io.EOF && len(c.ra) > 0 {
				err = io.ErrUnexpectedEOF
			}
			c.release()
			return err
		}
	}
	return nil
}

// release returns the read-ahead buffer once it holds nothing unread.
func (c *Conn) release() {
	if c.rbuf != nil && len(c.ra) == 0 {
		readPool.Put(c.rbuf)
		c.rbuf, c.ra = nil, nil
	}
}

func (c *Conn) readFrame() (Frame, error) {
	if err := c.fill(4); err != nil {
		return Frame{}, err
	}
	n := int(binary.BigEndian.Uint32(c.ra))
	if n > c.lim.MaxFrameSize+c.overhead() {
		return Frame{}, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n)
	}
	if n < HeaderSize+c.overhead() {
		return Frame{}, fmt.Errorf("%w: sealed frame of %d bytes", ErrBadFrame, n)
	}
	c.ra = c.ra[4:]
	// The frame gets its own buffer: its body outlives the read-ahead.
	buf := make([]byte, n)
	k := copy(buf, c.ra)
	c.ra = c.ra[k:]
	c.release()
	if k < n {
		if _, err := io.ReadFull(c.nc, buf[k:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return Frame{}, err
		}
	}
	if !c.sealed {
		return decodePlain(buf, c.lim.MaxFrameSize, c.lim.KeepCompressed)
	}
	pt, err := c.recv.open(buf[:0], buf)
	if err != nil {
		return Frame{}, ErrDecrypt
	}
	return decodePlain(pt, c.lim.MaxFrameSize, c.lim.KeepCompressed)
}

// decodePlain decodes a plaintext frame. Body aliases pt unless it was
// compressed; with keep a compressed body is not inflated and the frame
// keeps FlagCompressed.
func decodePlain(pt []byte, maxSize int, keep bool) (Frame, error) {
	if len(pt) < HeaderSize {
		return Frame{}, fmt.Errorf("%w: %d bytes", ErrBadFrame, len(pt))
	}
	if pt[0] != Version {
		return Frame{}, fmt.Errorf("%w: version %d", ErrBadFrame, pt[0])
	}
	flags := pt[1]
	if flags&^knownFlags != 0 {
		return Frame{}, fmt.Errorf("%w: flags %#x", ErrBadFrame, flags)
	}
	if flags&FlagResponse != 0 && flags&FlagPush != 0 {
		return Frame{}, fmt.Errorf("%w: response and push flags", ErrBadFrame)
	}
	f := Frame{
		Op:    imapi.Op{Service: pt[2], Command: pt[3]},
		Flags: flags &^ FlagCompressed,
		Seq:   binary.BigEndian.Uint32(pt[4:8]),
		Code:  imapi.Code(binary.BigEndian.Uint16(pt[8:10])),
	}
	body := pt[HeaderSize:]
	if flags&FlagCompressed != 0 && keep {
		f.Flags |= FlagCompressed
	} else if flags&FlagCompressed != 0 {
		b, err := inflate(body, maxSize)
		if err != nil {
			return Frame{}, err
		}
		body = b
	}
	if len(body) > 0 {
		f.Body = body
	}
	return f, nil
}

// WriteFrame seals and writes one frame.
func (c *Conn) WriteFrame(f Frame) error {
	return c.WriteFrames([]Frame{f})
}

// WriteFrames seals frames and writes them with one write call. A write
// error is final.
func (c *Conn) WriteFrames(fs []Frame) error {
	bp := bufPool.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() {
		if cap(buf) <= maxPooledBuf {
			*bp = buf[:0]
			bufPool.Put(bp)
		}
	}()

	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	var ferr error
	for i := range fs {
		var err error
		buf, err = c.appendSealed(buf, &fs[i])
		if err != nil {
			if c.werr != nil {
				return err
			}
			// The frame was not sealed (the nonce is unchanged): skip it and
			// still write the others, whose nonces are used.
			if ferr == nil {
				ferr = err
			}
		}
	}
	if err := c.flushTail(); err != nil {
		return err
	}
	if len(buf) > 0 {
		if _, err := c.nc.Write(buf); err != nil {
			c.werr = err
			return err
		}
	}
	return ferr
}

// Flush writes what a FrameWriter left unsent (Pending), waiting for the
// socket as Write does. A write error is final.
func (c *Conn) Flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	return c.flushTail()
}

// flushTail must be called with wmu held.
func (c *Conn) flushTail() error {
	if len(c.tail) == 0 {
		return nil
	}
	if _, err := c.nc.Write(c.tail); err != nil {
		c.werr = err
		return err
	}
	c.tail = nil
	return nil
}

// appendSealed appends the length-prefixed sealed form of f to buf.
// It must be called with wmu held.
func (c *Conn) appendSealed(buf []byte, f *Frame) ([]byte, error) {
	body := f.Body
	flags := f.Flags
	if flags&^knownFlags != 0 {
		return buf, fmt.Errorf("%w: flags %#x", ErrBadFrame, f.Flags)
	}
	if flags&FlagCompressed == 0 && c.lim.CompressThreshold > 0 && len(body) > c.lim.CompressThreshold {
		if z := deflate(body); len(z) < len(body) {
			body = z
			flags |= FlagCompressed
		}
	}
	if HeaderSize+len(body) > c.lim.MaxFrameSize || len(f.Body) > c.lim.MaxFrameSize {
		return buf, fmt.Errorf("%w: body of %d bytes", ErrFrameTooLarge, len(f.Body))
	}
	start := len(buf)
	buf = binary.BigEndian.AppendUint32(buf, uint32(HeaderSize+len(body)+c.overhead()))
	pt := len(buf)
	buf = append(buf, Version, flags, f.Op.Service, f.Op.Command)
	buf = binary.BigEndian.AppendUint32(buf, f.Seq)
	buf = binary.BigEndian.AppendUint16(buf, uint16(f.Code))
	buf = append(buf, body...)
	if !c.sealed {
		return buf, nil
	}
	// Room for the tag, so that the seal happens in place.
	buf = slices.Grow(buf, tagSize)
	sealed, err := c.send.seal(buf[pt:pt], buf[pt:])
	if err != nil {
		c.werr = err
		return buf[:start], err
	}
	return buf[:pt+len(sealed)], nil
}

const maxPooledBuf = 64 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

var deflaters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, flate.BestSpeed)
	return w
}}

// Deflate compresses a body as the Conn does. A frame written with
// FlagCompressed set and a Deflate'd body is sent as is, so that one body
// shared by many connections (a chatroom batch) is compressed once.
func Deflate(b []byte) []byte { return deflate(b) }

func deflate(b []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(b) / 2)
	w := deflaters.Get().(*flate.Writer)
	w.Reset(&out)
	_, _ = w.Write(b)
	_ = w.Close()
	deflaters.Put(w)
	return out.Bytes()
}

var inflaters sync.Pool

// Inflate reverses Deflate, refusing a body that inflates beyond max bytes:
// for readers with Limits.KeepCompressed.
func Inflate(b []byte, max int) ([]byte, error) { return inflate(b, max) }

func inflate(b []byte, max int) ([]byte, error) {
	var r io.ReadCloser
	if v := inflaters.Get(); v != nil {
		r = v.(io.ReadCloser)
		_ = r.(flate.Resetter).Reset(bytes.NewReader(b), nil)
	} else {
		r = flate.NewReader(bytes.NewReader(b))
	}
	defer inflaters.Put(r)
	var out bytes.Buffer
	n, err := out.ReadFrom(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return nil, fmt.Errorf("%w: inflate: %v", ErrBadFrame, err)
	}
	if n > int64(max) {
		return nil, fmt.Errorf("%w: body inflates beyond %d bytes", ErrFrameTooLarge, max)
	}
	return out.Bytes(), nil
}
