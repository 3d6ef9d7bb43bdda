package httpx

import "log/slog"

// LoggerOrDiscard returns l, or a logger that drops everything when l is nil, so a handler's
// Logger field may be left unset (as tests do).
func LoggerOrDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// LimitOr returns limit when it is set (positive), else def: a handler's size limit left at zero
// takes the handler's default.
func LimitOr(limit, def int64) int64 {
	if limit > 0 {
		return limit
	}
	return def
}
