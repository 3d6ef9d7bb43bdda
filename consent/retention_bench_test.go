package consent_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/consent"
	"herald/tracking"
)

// BenchmarkRetention1M seeds 1,000,000 tracking events (COPY), half of them past the 13 months,
// runs the retention job and reports the rows it removed per second; meanwhile a send-path
// statement (a recipient's claim update on campaign_recipients, as a batch job makes it) runs in
// a loop, and its p99 latency while the job runs is compared with the same statement's idle p99.
func BenchmarkRetention1M(b *testing.B) {
	ctx := context.Background()
	bb := setup(b)
	ws := bb.ensureWorkspace(b, "acme")
	camp := campaign(b, bb.pool, ws)
	const recipients, events = 10000, 1000000
	if _, err := bb.pool.Exec(ctx, `INSERT INTO campaign_recipients (campaign_id, contact_id, address, status)
		SELECT $1, g, 'p' || g || '@example.com', 'queued' FROM generate_series(1, $2) g`, camp, recipients); err != nil {
		b.Fatal(err)
	}
	var first int64
	if err := bb.pool.QueryRow(ctx, `SELECT min(id) FROM campaign_recipients`).Scan(&first); err != nil {
		b.Fatal(err)
	}
	old, recent := bb.now.Add(-400*day), bb.now.Add(-100*day)
	n, err := bb.pool.CopyFrom(ctx, pgx.Identifier{"tracking_events"},
		[]string{"workspace_id", "campaign_id", "recipient_id", "kind", "at", "ip", "user_agent"},
		pgx.CopyFromSlice(events, func(i int) ([]any, error) {
			at := recent
			if i%2 == 0 {
				at = old
			}
			return []any{ws, camp, first + int64(i%recipients), "open", at.Add(time.Duration(i) * time.Millisecond), "192.0.2.0", "Mail"}, nil
		}))
	if err != nil || n != events {
		b.Fatalf("seed: %d %v", n, err)
	}
	if _, err := bb.pool.Exec(ctx, `VACUUM ANALYZE tracking_events`); err != nil {
		b.Fatal(err)
	}
	if _, err := bb.pool.Exec(ctx, `VACUUM ANALYZE campaign_recipients`); err != nil {
		b.Fatal(err)
	}

	// The send-path statement: claim one recipient (status, lease, attempts), as a batch does.
	claim := func() time.Duration {
		id := first + rand.Int64N(recipients)
		start := time.Now()
		if _, err := bb.pool.Exec(ctx, `UPDATE campaign_recipients SET status = 'sending', claimed_until = now() + interval '1 minute',
			attempts = attempts + 1 WHERE id = $1`, id); err != nil {
			b.Error(err)
		}
		return time.Since(start)
	}
	p99 := func(d []time.Duration) time.Duration {
		slices.Sort(d)
		return d[len(d)*99/100]
	}
	var idle []time.Duration
	for range 2000 {
		idle = append(idle, claim())
	}

	w := bb.retentionWorker(consent.DefaultRetentionBatch)
	w.OptedOut, w.Workspace = nil, nil
	w.Aged = []consent.RetentionStep[consent.AgedPurger]{{What: consent.RemovedExpiredEvents, Purger: tracking.Retention{}}}
	var stop atomic.Bool
	busy := make(chan []time.Duration)
	go func() {
		var d []time.Duration
		for !stop.Load() {
			d = append(d, claim())
		}
		busy <- d
	}()
	b.ResetTimer()
	start := time.Now()
	removed, err := w.Run(ctx)
	elapsed := time.Since(start)
	b.StopTimer()
	stop.Store(true)
	running := <-busy
	if err != nil {
		b.Fatal(err)
	}
	if got := removed[consent.RemovedExpiredEvents]; got != events/2 {
		b.Fatalf("removed %d events, want %d", got, events/2)
	}
	rate := float64(removed[consent.RemovedExpiredEvents]) / elapsed.Seconds()
	b.ReportMetric(rate, "rows/s")
	b.ReportMetric(float64(p99(idle).Microseconds()), "idle-p99-µs")
	b.ReportMetric(float64(p99(running).Microseconds()), "running-p99-µs")
	b.Logf("retention removed %d of %d events in %v: %.0f rows/s; claim update p99 idle %v, while running %v (%d samples)",
		removed[consent.RemovedExpiredEvents], events, elapsed.Round(time.Millisecond), rate, p99(idle), p99(running), len(running))
}
