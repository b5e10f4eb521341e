package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The stand-in application protocol, spoken inside TLS 1.3 between the
// measuring client and the stand-in server. Every frame is a type byte, a
// 4-byte big-endian length and the payload:
//
//	'L' login          -> 'l' 256-byte session answer
//	'M' message        -> 'm' the same payload echoed (a 1:1 message and its ack)
//	'B' bulk download  -> the server writes 'b' frames of 16 KiB until the
//	                      client closes the connection
const (
	frameLogin     = 'L'
	frameLoginOK   = 'l'
	frameMessage   = 'M'
	frameMessageOK = 'm'
	frameBulk      = 'B'
	frameBulkData  = 'b'

	maxFrame = 1 << 20
)

var errFrameTooLarge = errors.New("frame too large")

func writeFrame(w io.Writer, typ byte, payload []byte) error {
	buf := make([]byte, 5+len(payload))
	buf[0] = typ
	binary.BigEndian.PutUint32(buf[1:5], uint32(len(payload)))
	copy(buf[5:], payload)
	_, err := w.Write(buf)
	return err
}

// readFrame reads one frame into buf (grown if needed) and returns its type
// and payload.
func readFrame(r io.Reader, buf []byte) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:5])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("%w: %d bytes", errFrameTooLarge, n)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, err
	}
	return hdr[0], buf, nil
}
