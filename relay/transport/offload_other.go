//go:build !linux

package transport

import "net"

func offloadCapable(*net.UDPConn) (gso, gro bool) { return false, false }

const gsoMaxSegments = 1

var segmentCmsgLen, groCmsgSpace = 0, 0

func putSegmentCmsg(b []byte, _ int) []byte { return b[:0] }

func groSegmentSize([]byte) int { return 0 }

func isGSOError(error) bool { return false }

func forceSocketBuffers(uintptr, int) {}
