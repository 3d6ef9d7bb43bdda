package campaigns_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
)

// A recipient row's claim and outcome updates are HOT: the outcome's new version (Message-ID,
// SMTP reply, sent_at: about twice the width of the queued row) still finds room on the row's
// page once the page's dead versions are pruned, so neither update writes an index entry and the
// row never leaves its page (a non-HOT update puts the new version on another page, as the page
// has no room). Migration 014's fillfactor (25) is what leaves that room: with 007's (50) about
// 80 of the 200 rows moved, with 30 up to 25 under -race.
func TestRecipientUpdatesStayOnTheirPage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := sendSetup(t, sendOpts{})
	// An autovacuum ANALYZE running meanwhile would hold a snapshot that keeps the claimed
	// versions from being pruned: the test's own database does without it.
	if _, err := b.pool.Exec(ctx, `ALTER TABLE campaign_recipients SET (autovacuum_enabled = false)`); err != nil {
		t.Fatal(err)
	}
	const n = 200
	ids := make([]int64, n)
	for i := range ids {
		// Addresses as wide as common real ones (the row's widest queued column).
		ids[i] = b.contact(t, fmt.Sprintf("firstname.lastname.%04d@mail.example.com", i), "Ann", true)
	}
	c := b.campaign(t, campaignOpts{})
	first, last := b.recipients(t, c, ids)

	pages := func() map[int64]int64 {
		t.Helper()
		rows, err := b.pool.Query(ctx, `SELECT id, (ctid::text::point)[0]::bigint FROM campaign_recipients
			WHERE campaign_id = $1`, c)
		if err != nil {
			t.Fatal(err)
		}
		out := map[int64]int64{}
		var id, page int64
		if _, err := pgx.ForEachRow(rows, []any{&id, &page}, func() error { out[id] = page; return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	before := pages()
	distinct := map[int64]bool{}
	for _, p := range before {
		distinct[p] = true
	}
	if len(distinct) < 4 {
		t.Fatalf("%d recipients on %d pages: too few pages for the test to mean anything", n, len(distinct))
	}

	if err := b.work(ctx, c, first, last, 1, 5); err != nil {
		t.Fatal(err)
	}
	for addr, r := range b.rows(t, c) {
		if r.Status != "sent" || r.MessageID == "" || r.Reply == "" {
			t.Fatalf("%s: %+v, want sent with its Message-ID and reply", addr, r)
		}
	}
	moved := 0
	for id, p := range pages() {
		if before[id] != p {
			moved++
		}
	}
	if moved > 0 {
		t.Errorf("%d of %d recipient rows moved to another page on claim or outcome (non-HOT updates)", moved, n)
	}
}
