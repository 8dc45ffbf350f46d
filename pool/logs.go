package pool

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// logEvery is the most often one kind of line is written; lines of the same kind in between
// are counted, and the next line says how many there were.
const logEvery = time.Second

// logLimiter summarises lines that a fault storm repeats (a retry per caller, a destroyed
// connection per pooled connection): at most one line of each message per logEvery, carrying
// "suppressed", the number of lines of that message left out since the last one.
type logLimiter struct {
	mu   sync.Mutex
	last map[string]*logState
}

type logState struct {
	at         time.Time
	suppressed int
}

func (l *logLimiter) log(ctx context.Context, to *slog.Logger, level slog.Level, msg string, args ...any) {
	if !to.Enabled(ctx, level) {
		return
	}
	l.mu.Lock()
	if l.last == nil {
		l.last = map[string]*logState{}
	}
	st := l.last[msg]
	if st == nil {
		st = &logState{}
		l.last[msg] = st
	}
	now := time.Now()
	if now.Sub(st.at) < logEvery {
		st.suppressed++
		l.mu.Unlock()
		return
	}
	n := st.suppressed
	st.at, st.suppressed = now, 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	to.Log(ctx, level, msg, args...)
}

func (l *logLimiter) info(ctx context.Context, to *slog.Logger, msg string, args ...any) {
	l.log(ctx, to, slog.LevelInfo, msg, args...)
}

func (l *logLimiter) warn(ctx context.Context, to *slog.Logger, msg string, args ...any) {
	l.log(ctx, to, slog.LevelWarn, msg, args...)
}
