package sdk

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// tcpInfo returns a function reading the smoothed RTT and the number of
// unacknowledged segments of nc, when nc is a TCP connection.
func tcpInfo(nc net.Conn) func() (time.Duration, int, bool) {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return func() (time.Duration, int, bool) {
		var info *unix.TCPInfo
		var gerr error
		if err := raw.Control(func(fd uintptr) {
			info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		}); err != nil || gerr != nil {
			return 0, 0, false
		}
		return time.Duration(info.Rtt) * time.Microsecond, int(info.Unacked), true
	}
}
