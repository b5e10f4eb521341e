package link

import (
	"errors"
	"os"
)

// FrameWriter writes frames on many connections in turn without ever
// waiting for one of them (a chatroom fan-out walks thousands of
// connections per batch; a client that stopped reading must not hold up the
// others). It seals into a buffer of its own, reused from frame to frame, so
// a write allocates nothing. One goroutine uses a FrameWriter at a time.
type FrameWriter struct {
	buf []byte
	fn  func(fd uintptr) bool // w.write, bound once

	// The call in progress, for fn.
	c   *Conn
	f   *Frame
	ran bool
	n   int
	err error
}

// NewFrameWriter returns a FrameWriter with an empty buffer.
func NewFrameWriter() *FrameWriter {
	w := &FrameWriter{}
	w.fn = w.write
	return w
}

// TryResult is what TryWrite did with a frame.
type TryResult int

const (
	// NotWritten: nothing was sealed or written (the connection has no
	// socket of its own, earlier bytes are still unsent, a write deadline
	// has passed, or the frame was refused); the caller writes it the
	// ordinary way.
	NotWritten TryResult = iota
	// Written: the whole sealed frame is in the socket's send buffer.
	Written
	// Pending: the frame is sealed and part of it is kept by the Conn;
	// Flush (or the next WriteFrames) must follow.
	Pending
)

// TryWrite seals f and writes it with one non-blocking write. An error is
// either the frame's (ErrFrameTooLarge, ErrBadFrame: NotWritten, the
// connection is fine) or the connection's, which is final.
func (w *FrameWriter) TryWrite(c *Conn, f *Frame) (TryResult, error) {
	if c.raw == nil {
		return NotWritten, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return NotWritten, c.werr
	}
	if len(c.tail) > 0 {
		return NotWritten, nil
	}
	w.c, w.f, w.ran, w.n, w.err = c, f, false, 0, nil
	err := c.raw.Write(w.fn)
	w.c, w.f = nil, nil
	if cap(w.buf) > maxPooledBuf {
		defer func() { w.buf = nil }() // after the tail is copied
	}
	if !w.ran {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return NotWritten, nil // a stale deadline: the ordinary write sets a new one
		}
		c.werr = err
		return NotWritten, err
	}
	if w.err != nil {
		if w.n < 0 {
			return NotWritten, w.err // not sealed (the frame's fault) or a sealing failure (werr set)
		}
		c.werr = w.err
		return NotWritten, w.err
	}
	if w.n == len(w.buf) {
		return Written, nil
	}
	c.tail = append([]byte(nil), w.buf[w.n:]...)
	return Pending, nil
}

// write runs inside RawConn.Write with the socket's write lock held.
// n < 0 marks a frame that was not sealed.
func (w *FrameWriter) write(fd uintptr) bool {
	w.ran = true
	buf, err := w.c.appendSealed(w.buf[:0], w.f)
	w.buf = buf
	if err != nil {
		w.n, w.err = -1, err
		return true
	}
	w.n, w.err = sockWrite(fd, buf)
	return true
}
