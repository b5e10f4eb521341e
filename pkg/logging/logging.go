// Package logging holds the one default every component applies to its
// injected *slog.Logger (STYLE.md #18): a component given no logger logs
// nothing, rather than writing to a global one.
package logging

import "log/slog"

// OrDiscard returns l, or a logger that discards every record when l is
// nil.
func OrDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
