package consent_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"herald/consent"
	"herald/internal/workspace"
)

// BenchmarkDecide measures one consent decision as the send worker makes it: inside the send's
// transaction, one round trip that reads the suppression list and the contact's consent state
// for the purpose, locking the latter FOR SHARE (marketing), or the suppression list alone
// (transactional). Each iteration makes 5,000 decisions (so `-benchtime 1x` still measures), in
// transactions of 100.
func BenchmarkDecide(bm *testing.B) {
	ctx := context.Background()
	b := setup(bm)
	ws, err := workspace.Ensure(ctx, b.pool, "bench")
	if err != nil {
		bm.Fatal(err)
	}
	b.purpose(bm, ws.ID, "news")
	const contacts = 1000
	ids := make([]int64, contacts)
	for i := range ids {
		ids[i] = b.contact(bm, ws.ID, fmt.Sprintf("u%d@example.com", i))
		b.record(bm, consent.Event{WorkspaceID: ws.ID, ContactID: ids[i], Purpose: "news", Action: consent.ActionGranted})
	}
	// A database in use has statistics (autovacuum analyses a table soon after a bulk load);
	// without them the planner takes these fresh tables for nearly empty and hashes a whole
	// workspace's rows per batch, which is not what is measured here.
	if _, err := b.pool.Exec(ctx, `ANALYZE contacts, consent_state, suppressions`); err != nil {
		bm.Fatal(err)
	}
	bm.Run("marketing-batch-100", func(bm *testing.B) {
		const perIter, batch = 5000, 100
		rs := make([]consent.BatchRecipient, batch)
		start := time.Now()
		for i := 0; i < bm.N*perIter; i += batch {
			for j := range rs {
				k := (i + j) % contacts
				rs[j] = consent.BatchRecipient{ContactID: ids[k], Address: fmt.Sprintf("u%d@example.com", k)}
			}
			tx, err := b.pool.Begin(ctx)
			if err != nil {
				bm.Fatal(err)
			}
			ds, err := b.svc.DecideBatch(ctx, tx, ws.ID, "news", rs)
			if err != nil || !ds[0].Allowed || !ds[batch-1].Allowed {
				bm.Fatalf("decide batch: %v", err)
			}
			if err := tx.Commit(ctx); err != nil {
				bm.Fatal(err)
			}
		}
		us := float64(time.Since(start).Microseconds()) / float64(bm.N*perIter)
		bm.ReportMetric(us, "µs/decision")
		fmt.Printf("consent.DecideBatch (marketing, batches of %d): %.1f µs per decision over %d decisions\n", batch, us, bm.N*perIter)
	})
	for _, stream := range []string{consent.StreamMarketing, consent.StreamTransactional} {
		bm.Run(stream, func(bm *testing.B) {
			const perIter = 5000
			tx, err := b.pool.Begin(ctx)
			if err != nil {
				bm.Fatal(err)
			}
			start := time.Now()
			for i := 0; i < bm.N*perIter; i++ {
				if i%100 == 99 {
					if err := tx.Commit(ctx); err != nil {
						bm.Fatal(err)
					}
					if tx, err = b.pool.Begin(ctx); err != nil {
						bm.Fatal(err)
					}
				}
				c := ids[i%contacts]
				d, err := b.svc.Decide(ctx, tx, consent.Request{WorkspaceID: ws.ID, ContactID: &c,
					Address: fmt.Sprintf("u%d@example.com", i%contacts), Stream: stream, Purpose: "news"})
				if err != nil || !d.Allowed {
					bm.Fatalf("decide: %+v %v", d, err)
				}
			}
			us := float64(time.Since(start).Microseconds()) / float64(bm.N*perIter)
			_ = tx.Commit(ctx)
			bm.ReportMetric(us, "µs/decision")
			fmt.Printf("consent.Decide (%s): %.0f µs per decision over %d decisions\n", stream, us, bm.N*perIter)
		})
	}
}
