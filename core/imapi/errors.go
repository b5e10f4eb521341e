package imapi

import "fmt"

// Code is a stable result code carried in responses on every transport and in
// the server HTTP API. 0 is success. Values are never reused.
type Code uint16

const (
	OK               Code = 0
	ErrBadRequest    Code = 400 // malformed or invalid body
	ErrUnauthorized  Code = 401 // bad or expired token, unknown appkey
	ErrForbidden     Code = 403 // not a member, blocked, muted
	ErrNotFound      Code = 404
	ErrConflict      Code = 409
	ErrTooLarge      Code = 413
	ErrRateLimited   Code = 429
	ErrRejected      Code = 451 // refused by the app's moderation hook
	ErrInternal      Code = 500
	ErrUnavailable   Code = 503 // a service is not reachable; retry
	ErrTimeout       Code = 504
	ErrNotLoggedIn   Code = 1001 // a request other than login before login
	ErrKicked        Code = 1002 // another device took over this session
	ErrUnknownOp     Code = 1003
	ErrUserDisabled  Code = 1004
	ErrRecallExpired Code = 1005
)

var codeText = map[Code]string{
	OK: "ok", ErrBadRequest: "bad request", ErrUnauthorized: "unauthorized",
	ErrForbidden: "forbidden", ErrNotFound: "not found", ErrConflict: "conflict",
	ErrTooLarge: "too large", ErrRateLimited: "rate limited", ErrRejected: "rejected by moderation",
	ErrInternal: "internal error", ErrUnavailable: "service unavailable", ErrTimeout: "timeout",
	ErrNotLoggedIn: "not logged in", ErrKicked: "kicked by another device",
	ErrUnknownOp: "unknown operation", ErrUserDisabled: "user disabled",
	ErrRecallExpired: "recall window expired",
}

func (c Code) String() string {
	if t, ok := codeText[c]; ok {
		return t
	}
	return fmt.Sprintf("code %d", uint16(c))
}

// Error is a failed request: a code and a human-readable message.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message,omitempty"`
	// RetryAfterMs, on a retryable refusal (503 "busy": the server sheds
	// load), is about when a resend may succeed, in milliseconds.
	RetryAfterMs int64 `json:"retry_after_ms,omitempty"`
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("imapi: %d %s", e.Code, e.Code)
	}
	return fmt.Sprintf("imapi: %d %s: %s", e.Code, e.Code, e.Message)
}

// Errorf builds an *Error.
func Errorf(c Code, format string, args ...any) *Error {
	return &Error{Code: c, Message: fmt.Sprintf(format, args...)}
}

// Retryable reports whether a send refused with c may succeed if sent
// again unchanged (the service or the store was unavailable, overloaded or
// late); other codes are definitive.
func (c Code) Retryable() bool {
	return c == ErrUnavailable || c == ErrTimeout
}
