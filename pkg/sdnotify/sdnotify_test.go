package sdnotify

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNotify(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if sent, err := Notify(Ready); sent || err != nil {
		t.Fatalf("without NOTIFY_SOCKET: sent %v, err %v", sent, err)
	}
	path := filepath.Join(t.TempDir(), "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	for _, want := range []string{Ready, ReloadingNow(), Stopping} {
		if sent, err := Notify(want); !sent || err != nil {
			t.Fatalf("Notify(%q): sent %v, err %v", want, sent, err)
		}
		buf := make([]byte, 256)
		ln.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := ln.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("got %q (%v), want %q", buf[:n], err, want)
		}
	}
	if !strings.Contains(ReloadingNow(), "MONOTONIC_USEC=") {
		t.Fatal("RELOADING without MONOTONIC_USEC")
	}
}
