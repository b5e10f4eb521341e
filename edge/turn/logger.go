package turn

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/pion/logging"
	"golang.org/x/time/rate"
)

// pionLoggerFactory sends pion's logs to slog. pion logs per packet at
// Debug and Info (permission refusals, missing allocations), so both map to
// Debug; Warn and Error are rate-limited so a flood cannot fill the disk.
type pionLoggerFactory struct{ log *slog.Logger }

func (f pionLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return &pionLogger{log: f.log.With("pion", scope), limit: rate.NewLimiter(rate.Every(time.Second), 20)}
}

type pionLogger struct {
	log   *slog.Logger
	limit *rate.Limiter
}

func (l *pionLogger) emit(level slog.Level, msg string) {
	if level >= slog.LevelWarn && !l.limit.Allow() {
		return
	}
	l.log.Log(context.Background(), level, msg)
}

func (l *pionLogger) emitf(level slog.Level, format string, args ...any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	l.emit(level, fmt.Sprintf(format, args...))
}

func (l *pionLogger) Trace(msg string)                  {}
func (l *pionLogger) Tracef(format string, args ...any) {}
func (l *pionLogger) Debug(msg string)                  { l.emit(slog.LevelDebug, msg) }
func (l *pionLogger) Debugf(format string, args ...any) { l.emitf(slog.LevelDebug, format, args...) }
func (l *pionLogger) Info(msg string)                   { l.emit(slog.LevelDebug, msg) }
func (l *pionLogger) Infof(format string, args ...any)  { l.emitf(slog.LevelDebug, format, args...) }
func (l *pionLogger) Warn(msg string)                   { l.emit(slog.LevelWarn, msg) }
func (l *pionLogger) Warnf(format string, args ...any)  { l.emitf(slog.LevelWarn, format, args...) }
func (l *pionLogger) Error(msg string)                  { l.emit(slog.LevelWarn, msg) }
func (l *pionLogger) Errorf(format string, args ...any) { l.emitf(slog.LevelWarn, format, args...) }
