package netns

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestNameOwner(t *testing.T) {
	tests := []struct {
		name    string
		wantPID int
		wantOK  bool
	}{
		{Name(4242, "standard", "user"), 4242, true},
		{Name(1, "w", "a_b"), 1, true},
		{"llw-x-standard-user", 0, false},
		{"llw-0-w-a", 0, false},
		{"llw-12", 0, false},
		{"other-12-w-a", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pid, ok := Owner(tc.name)
			if pid != tc.wantPID || ok != tc.wantOK {
				t.Fatalf("Owner(%q) = %d, %v; want %d, %v", tc.name, pid, ok, tc.wantPID, tc.wantOK)
			}
		})
	}
	if got := Name(7, "standard", "core"); got != "llw-7-standard-core" {
		t.Fatalf("Name = %q", got)
	}
}

func TestAlive(t *testing.T) {
	if !alive(os.Getpid()) {
		t.Fatal("this process is not alive")
	}
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	pid := cmd.Process.Pid
	// Not yet waited for: a zombie once it exits.
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(pid) {
		t.Fatal("exited child (zombie) counted as alive")
	}
	cmd.Wait()
	if alive(pid) {
		t.Fatal("reaped child counted as alive")
	}
}
