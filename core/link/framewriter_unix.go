//go:build unix

package link

import "syscall"

const canTryWrite = true

// sockWrite writes b on a non-blocking socket once; a full send buffer is
// 0 bytes written, not an error.
func sockWrite(fd uintptr, b []byte) (int, error) {
	for {
		n, err := syscall.Write(int(fd), b)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return 0, nil
		case err != nil:
			return 0, err
		}
		return n, nil
	}
}
