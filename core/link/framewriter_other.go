//go:build !unix

package link

import "errors"

// Elsewhere FrameWriter never writes (TryWrite answers NotWritten).
const canTryWrite = false

func sockWrite(uintptr, []byte) (int, error) { return 0, errors.ErrUnsupported }
