package httpx_test

import (
	"log/slog"
	"testing"

	"herald/internal/httpx"
)

func TestDefaults(t *testing.T) {
	t.Parallel()
	l := slog.Default()
	if httpx.LoggerOrDiscard(l) != l || httpx.LoggerOrDiscard(nil) == nil {
		t.Fatal("LoggerOrDiscard")
	}
	httpx.LoggerOrDiscard(nil).Error("dropped") // must not panic
	for _, tc := range []struct{ limit, want int64 }{{0, 10}, {-1, 10}, {5, 5}} {
		if got := httpx.LimitOr(tc.limit, 10); got != tc.want {
			t.Errorf("LimitOr(%d, 10) = %d, want %d", tc.limit, got, tc.want)
		}
	}
}
