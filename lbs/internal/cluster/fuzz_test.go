package cluster

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzForwardFrame: frames come only from authenticated members, but a bad
// one must still fail cleanly.
func FuzzForwardFrame(f *testing.F) {
	var buf bytes.Buffer
	writeFrame(&buf, &forwardReq{Kind: "apply", Cmd: []byte(`{"op":"drain","id":"x"}`)})
	f.Add(buf.Bytes())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add(binary.BigEndian.AppendUint32(nil, 2))
	f.Fuzz(func(t *testing.T, b []byte) {
		var req forwardReq
		readFrame(bytes.NewReader(b), &req)
	})
}
