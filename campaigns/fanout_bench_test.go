package campaigns_test

import (
	"context"
	"fmt"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/campaigns"
)

// BenchmarkFanOut1M fans out a campaign to a list of 1,000,000 contacts (seeded with
// generate_series; 1% of the addresses suppressed, 10% with a granted consent) by running
// FanOutWorker.Work directly with its default page and batch sizes, and prints the seconds, rows/s,
// batch jobs and the peak Go heap (runtime/metrics, sampled every 5 ms) and peak RSS of the
// process. HERALD_FANOUT_CONTACTS overrides the size.
func BenchmarkFanOut1M(b *testing.B) {
	contacts := 1_000_000
	if s := os.Getenv("HERALD_FANOUT_CONTACTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		contacts = n
	}
	ctx := context.Background()
	cb := cSetup(b)
	start := time.Now()
	for _, q := range []string{
		`INSERT INTO contacts (workspace_id, external_id, email, name, timezone, attributes)
			SELECT $1, 'c-' || g, 'user.' || g || '@example.com', 'User ' || g,
				CASE WHEN g % 3 = 0 THEN 'Europe/Berlin' ELSE '' END, jsonb_build_object('seats', g % 50)
			FROM generate_series(1, $2::int) g`,
		`INSERT INTO lists (workspace_id, name) SELECT $1, 'all' WHERE $2::int > 0`,
		`INSERT INTO list_members (workspace_id, list_id, contact_id)
			SELECT $1, (SELECT id FROM lists WHERE workspace_id = $1 AND name = 'all'), id FROM contacts
			WHERE workspace_id = $1 AND $2::int > 0`,
		`INSERT INTO consent_state (workspace_id, contact_id, purpose, status, event_id, source, updated_at)
			SELECT $1, id, 'news', 'granted', 0, 'import', now() FROM contacts
			WHERE workspace_id = $1 AND id % 10 = 0 AND $2::int > 0`,
	} {
		if _, err := cb.pool.Exec(ctx, q, cb.ws, contacts); err != nil {
			b.Fatalf("%v\n%s", err, q)
		}
	}
	var supp [][]any
	for i := 7; i <= contacts; i += 100 {
		supp = append(supp, []any{cb.ws, cb.svc.Keys.AddressHash(cb.ws, fmt.Sprintf("user.%d@example.com", i)), "hard_bounce"})
	}
	if _, err := cb.pool.CopyFrom(ctx, pgx.Identifier{"suppressions"}, []string{"workspace_id", "address_hash", "reason"},
		pgx.CopyFromRows(supp)); err != nil {
		b.Fatal(err)
	}
	if _, err := cb.pool.Exec(ctx, `VACUUM ANALYZE contacts, lists, list_members, consent_state, suppressions`); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d contacts in %s", contacts, time.Since(start).Round(time.Millisecond))

	var elapsed time.Duration
	var peakHeap atomic.Uint64
	var last campaigns.Campaign
	for b.Loop() {
		b.StopTimer()
		c := cb.scheduled(b, campaigns.CampaignInput{})
		w := cb.fanOut()
		stop := sampleHeap(&peakHeap)
		b.StartTimer()
		t0 := time.Now()
		if err := w.Work(ctx, job(campaigns.FanOutArgs{CampaignID: c.ID})); err != nil {
			b.Fatal(err)
		}
		elapsed = time.Since(t0)
		b.StopTimer()
		stop()
		last = cb.status(b, c.ID)
		b.StartTimer()
	}
	var rows, open, jobs int64
	if err := cb.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE status = 'queued'),
		(SELECT count(*) FROM river_job WHERE kind = 'campaigns.send_batch' AND (args->>'campaign_id')::bigint = $1)
		FROM campaign_recipients WHERE campaign_id = $1`, last.ID).Scan(&rows, &open, &jobs); err != nil {
		b.Fatal(err)
	}
	if !last.FanoutDone || rows != int64(contacts) || last.AudienceSize != rows {
		b.Fatalf("fan-out incomplete: done %v, %d rows, audience_size %d, want %d", last.FanoutDone, rows, last.AudienceSize, contacts)
	}
	// The audience walk alone, to tell its share of the fan-out from the writes'.
	walkStart := time.Now()
	for after := int64(0); ; {
		page, err := campaigns.AudiencePage(ctx, cb.pool, cb.ws, last.Audience, after, campaigns.DefaultPageSize)
		if err != nil {
			b.Fatal(err)
		}
		if len(page) < campaigns.DefaultPageSize {
			break
		}
		after = page[len(page)-1].ContactID
	}
	walk := time.Since(walkStart)
	statsStart := time.Now()
	if _, err := campaigns.CampaignStats(ctx, cb.pool, cb.ws, last.ID, time.Now()); err != nil {
		b.Fatal(err)
	}
	statsTime := time.Since(statsStart)
	// A sweep with the million open recipients (no claim expired: the costliest case).
	sweepStart := time.Now()
	sw := &campaigns.SweepWorker{DB: cb.pool, River: cb.river, Logger: cb.logger}
	if err := sw.Work(ctx, job(campaigns.SweepArgs{})); err != nil {
		b.Fatal(err)
	}
	sweepTime := time.Since(sweepStart)
	rate := float64(rows) / elapsed.Seconds()
	peakMB := float64(peakHeap.Load()) / (1 << 20)
	b.ReportMetric(elapsed.Seconds(), "s/fanout")
	b.ReportMetric(rate, "rows/s")
	b.ReportMetric(peakMB, "peak-heap-MB")
	fmt.Printf("fan-out: %d recipients (%d open, %d suppressed), %d batch jobs in %.2fs (%.0f rows/s); "+
		"peak Go heap %.1f MB, peak RSS %s; the audience walk alone takes %.2fs; stats query %s; a sweep %s\n", rows, open,
		rows-open, jobs, elapsed.Seconds(), rate, peakMB, peakRSS(), walk.Seconds(), statsTime.Round(time.Millisecond),
		sweepTime.Round(time.Millisecond))
}

// sampleHeap records the largest live heap (objects) into peak every 5 ms until the returned
// stop function is called.
func sampleHeap(peak *atomic.Uint64) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() { close(done); <-finished }
}

// peakRSS is the process's peak resident set (VmHWM), or "?" where /proc is not there.
func peakRSS() string {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}
