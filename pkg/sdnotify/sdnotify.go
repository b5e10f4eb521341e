// Package sdnotify tells the service manager about a service's state, as
// sd_notify(3) does, without libsystemd: one datagram to the unix socket
// named by $NOTIFY_SOCKET. Outside systemd (no $NOTIFY_SOCKET) every call
// does nothing.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// States a service sends (systemd.service(5), Type=notify).
const (
	Ready     = "READY=1"
	Stopping  = "STOPPING=1"
	Reloading = "RELOADING=1"
)

// Notify sends state (newline-separated assignments) to $NOTIFY_SOCKET. It
// reports whether a service manager was there to tell.
func Notify(state string) (bool, error) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return false, nil
	}
	if path[0] == '@' { // abstract namespace
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("sdnotify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("sdnotify: %w", err)
	}
	return true, nil
}

// ReloadingNow is the RELOADING=1 message with the monotonic timestamp
// systemd (253 and later) expects beside it.
func ReloadingNow() string {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return fmt.Sprintf("%s\nMONOTONIC_USEC=%d", Reloading, ts.Nano()/int64(time.Microsecond))
}
