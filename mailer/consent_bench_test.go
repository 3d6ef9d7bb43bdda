package mailer_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"herald/internal/smtpcapture"
	"herald/mailer"
)

// spanSink counts hand-offs and notes the first and the last.
type spanSink struct {
	n           atomic.Int64
	mu          sync.Mutex
	first, last time.Time
}

func (s *spanSink) hook(*smtpcapture.Message) error {
	now := time.Now()
	s.mu.Lock()
	if s.first.IsZero() {
		s.first = now
	}
	s.last = now
	s.mu.Unlock()
	s.n.Add(1)
	return nil
}

// marketingRate queues n marketing messages with the queue paused, resumes it and returns the
// rate from the first to the last hand-off.
func marketingRate(bm *testing.B, n int, check bool) float64 {
	sink := &spanSink{}
	b := setup(bm, setupOpts{dataHook: sink.hook, keep: -1, workers: 32, poolSize: 16, dbPool: 40,
		cooldown: 20 * time.Millisecond, noConsentCheck: !check})
	ctx := context.Background()
	cs := seedContacts(bm, b, b.wsA, "news", n)
	if err := b.river.QueuePause(ctx, mailer.QueueMarketing, nil); err != nil {
		bm.Fatal(err)
	}
	enqueueMarketing(bm, b, b.wsA, "news", cs)
	if err := b.river.QueueResume(ctx, mailer.QueueMarketing, nil); err != nil {
		bm.Fatal(err)
	}
	b.waitFinal(bm, b.wsA, 5*time.Minute)
	if got := sink.n.Load(); got != int64(n) {
		bm.Fatalf("%d of %d handed off", got, n)
	}
	return float64(n-1) / sink.last.Sub(sink.first).Seconds()
}

// BenchmarkMarketingConsentCheck measures marketing sends per second through the send worker
// (claim, consent decision holding its lock, SMTP hand-off, outcome, all in one transaction) with
// the decision on and off, alternating three runs each on fresh databases; it reports the medians
// and what the check costs in throughput.
func BenchmarkMarketingConsentCheck(bm *testing.B) {
	const n, runs = 5000, 3
	var on, off []float64
	for range runs {
		off = append(off, marketingRate(bm, n, false))
		on = append(on, marketingRate(bm, n, true))
	}
	med := func(v []float64) float64 { sort.Float64s(v); return v[len(v)/2] }
	mOn, mOff := med(on), med(off)
	cost := 100 * (1 - mOn/mOff)
	bm.ReportMetric(mOn, "msgs/s-check-on")
	bm.ReportMetric(mOff, "msgs/s-check-off")
	bm.ReportMetric(cost, "%-throughput-cost")
	fmt.Printf("marketing sends through the worker, %d messages x %d runs: consent check on %.0f msgs/s (runs %.0f), off %.0f msgs/s (runs %.0f): the check costs %.1f%% of throughput\n",
		n, runs, mOn, on, mOff, off, cost)
}
