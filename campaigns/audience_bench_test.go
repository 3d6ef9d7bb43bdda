package campaigns_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"herald/campaigns"
	"herald/internal/db"
	"herald/internal/dbtest"
	"herald/internal/workspace"
)

// BenchmarkAudiencePage walks an audience of 1,000,000 contacts 10,000 at a time: one list
// holding every contact, plus a segment, minus an excluding list of 1% of them, with 1% of the
// addresses repeated by a second contact. It reports members/s and the time of the whole walk.
// The contacts are seeded with generate_series in SQL.
func BenchmarkAudiencePage(b *testing.B) {
	const (
		contacts = 1_000_000
		pageSize = 10_000
	)
	ctx := context.Background()
	pool := dbtest.NewPool(b)
	ws, err := workspace.Ensure(ctx, pool, "bench")
	if err != nil {
		b.Fatal(err)
	}
	// Another workspace's contacts interleave with the walked one's, as on a shared database.
	other, err := workspace.Ensure(ctx, pool, "other")
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for _, q := range []string{
		fmt.Sprintf(`INSERT INTO contacts (workspace_id, external_id, email, name, locale, timezone, attributes)
			SELECT CASE WHEN g %% 10 = 0 THEN %d ELSE $1 END, 'c-' || g,
				-- one contact in 100 repeats the address of the contact before it
				'user.' || (g - (g %% 100 = 2)::int) || '@example.com',
				'User ' || g, 'en', 'Europe/Berlin',
				jsonb_build_object('plan', CASE WHEN g %% 3 = 0 THEN 'pro' ELSE 'free' END, 'seats', g %% 50)
			FROM generate_series(1, %d) g`, other.ID, contacts*10/9),
		`INSERT INTO lists (workspace_id, name) VALUES ($1, 'everyone'), ($1, 'bounced-before')`,
		`INSERT INTO list_members (workspace_id, list_id, contact_id)
			SELECT $1, l.id, c.id FROM contacts c JOIN lists l ON l.workspace_id = $1 AND l.name = 'everyone'
			WHERE c.workspace_id = $1`,
		`INSERT INTO list_members (workspace_id, list_id, contact_id)
			SELECT $1, l.id, c.id FROM contacts c JOIN lists l ON l.workspace_id = $1 AND l.name = 'bounced-before'
			WHERE c.workspace_id = $1 AND c.id % 100 = 7`,
		`INSERT INTO segments (workspace_id, name, filter) VALUES ($1, 'pro', 'attributes.plan = "pro" and attributes.seats >= 10')`,
	} {
		args := []any{ws.ID}
		if _, err := pool.Exec(ctx, q, args[:countParams(q)]...); err != nil {
			b.Fatalf("%v\n%s", err, q)
		}
	}
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE contacts, list_members, lists, segments`); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d contacts in %s", contacts, time.Since(start).Round(time.Millisecond))
	a := campaigns.Audience{Lists: []string{"everyone"}, Segments: []string{"pro"}, ExcludeLists: []string{"bounced-before"}}
	t0 := time.Now()
	want, err := campaigns.AudienceCount(ctx, pool, ws.ID, a)
	if err != nil {
		b.Fatal(err)
	}
	countTime := time.Since(t0)
	if os.Getenv("HERALD_EXPLAIN") != "" {
		explainAudiencePage(b, pool, ws.ID, a, 500_000, pageSize)
	}
	b.ResetTimer()
	var total time.Duration
	var walked int64
	for b.Loop() {
		t0 := time.Now()
		var after int64
		walked = 0
		for {
			page, err := campaigns.AudiencePage(ctx, pool, ws.ID, a, after, pageSize)
			if err != nil {
				b.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			walked += int64(len(page))
			after = page[len(page)-1].ContactID
		}
		total = time.Since(t0)
	}
	if walked != want {
		b.Fatalf("walked %d members, AudienceCount says %d", walked, want)
	}
	rate := float64(walked) / total.Seconds()
	b.ReportMetric(rate, "members/s")
	b.ReportMetric(total.Seconds(), "s/walk")
	fmt.Printf("audience walk: %d members of %d contacts in pages of %d: %.2fs (%.0f members/s); AudienceCount %.2fs\n",
		walked, contacts, pageSize, total.Seconds(), rate, countTime.Seconds())
}

// countParams returns 1 when q uses $1, else 0.
func countParams(q string) int {
	for i := 0; i+1 < len(q); i++ {
		if q[i] == '$' && q[i+1] == '1' {
			return 1
		}
	}
	return 0
}

// explainer is a db.Querier that prints EXPLAIN ANALYZE of each query before running it.
type explainer struct {
	db.Querier
	tb testing.TB
}

func (e explainer) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if strings.HasPrefix(strings.TrimSpace(sql), "SELECT k.id") {
		rows, err := e.Querier.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+sql, args...)
		if err != nil {
			return nil, err
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, err
		}
		e.tb.Logf("%s\n%s", sql, strings.Join(lines, "\n"))
	}
	return e.Querier.Query(ctx, sql, args...)
}

func (e explainer) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return e.Querier.Exec(ctx, sql, args...)
}

// explainAudiencePage logs the plan of one page (set HERALD_EXPLAIN=1 and run with -v).
func explainAudiencePage(tb testing.TB, q db.Querier, ws int64, a campaigns.Audience, after int64, limit int) {
	if _, err := campaigns.AudiencePage(context.Background(), explainer{Querier: q, tb: tb}, ws, a, after, limit); err != nil {
		tb.Fatal(err)
	}
}
