package campaigns_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/campaigns"
	"herald/consent"
)

// BenchmarkCampaignStats100k times GET /v1/campaigns/{id}/stats's work (CampaignStats) for a sent
// campaign of 100,000 recipients with 200,000 tracking events (120,000 opens, 80,000 clicks on
// five links, a fifth of each by machines), 2,000 feedback events, 1,000 withdrawals of its
// purpose and 500 unsubscribe-all suppressions, over freshly analysed tables.
func BenchmarkCampaignStats100k(b *testing.B) {
	const total, events = 100_000, 200_000
	ctx := context.Background()
	cb := cSetup(b)
	seedStart := time.Now()
	ids := cb.contacts(b, cb.ws, "s", total, "")
	cb.list(b, cb.ws, "all", nil)
	c := cb.campaign(b, cb.ws, campaigns.CampaignInput{})
	t0 := cb.now.Truncate(time.Hour).Add(-48 * time.Hour)
	exec := func(sql string, args ...any) {
		b.Helper()
		if _, err := cb.pool.Exec(ctx, sql, args...); err != nil {
			b.Fatal(err)
		}
	}
	exec(`UPDATE campaigns SET status = 'sent', started_at = $2, finished_at = $3 WHERE id = $1`, c.ID, t0, t0.Add(2*time.Hour))
	// Sent over two hours; every 200th refused at the hand-off with a 5.1.1.
	exec(`INSERT INTO campaign_recipients (campaign_id, contact_id, address, status, reason, smtp_reply, sent_at, updated_at)
		SELECT $1, c.id, c.email, CASE WHEN c.id % 200 = 0 THEN 'failed' ELSE 'sent' END,
			CASE WHEN c.id % 200 = 0 THEN 'hard_bounce' ELSE '' END, '',
			CASE WHEN c.id % 200 = 0 THEN NULL ELSE $2::timestamptz + (c.id % 7200) * interval '1 second' END,
			$2::timestamptz + (c.id % 7200) * interval '1 second'
		FROM contacts c WHERE c.workspace_id = $3`, c.ID, t0, cb.ws)
	exec(`INSERT INTO campaign_links (campaign_id, url) SELECT $1, 'https://acme.example/' || i FROM generate_series(1, 5) i`, c.ID)
	// Each event names a sent recipient picked by a stride through them, so that recipients
	// have several events and most have none.
	// A join on the recipients' ranks, not an index into an array of their ids: subscripting a
	// 100,000-element array per generated row copies it each time (it ran for most of an hour).
	exec(`WITH r AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM campaign_recipients WHERE campaign_id = $2 AND status = 'sent'),
		half AS (SELECT count(*) / 2 AS n FROM r),
		l AS (SELECT min(id) AS first FROM campaign_links WHERE campaign_id = $2)
		INSERT INTO tracking_events (workspace_id, campaign_id, recipient_id, kind, link_id, at, machine)
		SELECT $1, $2, r.id, CASE WHEN g.i <= $4 * 0.6 THEN 'open' ELSE 'click' END,
			CASE WHEN g.i <= $4 * 0.6 THEN NULL ELSE l.first + g.i % 5 END,
			$3::timestamptz + (g.i % 172800) * interval '1 second', g.i % 5 = 0
		FROM generate_series(1, $4) g (i) CROSS JOIN half CROSS JOIN l JOIN r ON r.n = (g.i * 7919) % half.n`, cb.ws, c.ID, t0, events)
	exec(`INSERT INTO feedback_events (workspace_id, kind, source, address_hash, campaign_id, recipient_id, at)
		SELECT $1, (ARRAY['hard_bounce', 'soft_bounce', 'complaint'])[1 + r.id % 3], 'dsn', '\x00', $2, r.id, r.sent_at + interval '5 minutes'
		FROM campaign_recipients r WHERE r.campaign_id = $2 AND r.status = 'sent' AND r.id % 50 = 1`, cb.ws, c.ID)
	var evs []*consent.Event
	for i := range 1000 {
		evs = append(evs, &consent.Event{WorkspaceID: cb.ws, ContactID: ids[i*97], Purpose: "news", Action: consent.ActionWithdrawn,
			Source: consent.SourceOneClick, LawfulBasis: consent.BasisConsent, Actor: "bench", OccurredAt: t0.Add(3 * time.Hour)})
	}
	if err := pgx.BeginFunc(ctx, cb.pool, func(tx pgx.Tx) error { return cb.svc.RecordAll(ctx, tx, evs) }); err != nil {
		b.Fatal(err)
	}
	for i := range 500 {
		if _, err := cb.svc.Suppress(ctx, cb.pool, consent.Suppression{WorkspaceID: cb.ws,
			Address: fmt.Sprintf("s-%d@example.com", 1+i*191), Reason: consent.ReasonUnsubscribedAll}); err != nil {
			b.Fatal(err)
		}
	}
	exec(`ANALYZE contacts, campaign_recipients, tracking_events, campaign_links, feedback_events, consent_events, suppressions, campaigns`)
	var n int
	if err := cb.pool.QueryRow(ctx, `SELECT count(*) FROM tracking_events WHERE campaign_id = $1`, c.ID).Scan(&n); err != nil || n != events {
		b.Fatalf("%d tracking events seeded, %v", n, err)
	}
	b.Logf("seeded %d recipients and %d tracking events in %s", total, n, time.Since(seedStart).Round(time.Millisecond))

	var s campaigns.Stats
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		var err error
		if s, err = campaigns.CampaignStats(ctx, cb.pool, cb.ws, c.ID, cb.now); err != nil {
			b.Fatal(err)
		}
	}
	per := time.Since(start) / time.Duration(b.N)
	b.ReportMetric(float64(per.Microseconds())/1000, "ms/stats")
	b.Logf("stats of a %d-recipient campaign with %d tracking events: %s each (sent %d, opens %d/%d unique, clicks %d/%d unique, "+
		"unsubscribes %d, hard %d, soft %d, complaints %d, %d hours)", total, events, per.Round(time.Millisecond), s.Sent,
		s.Opens.Total, s.Opens.Unique, s.Clicks.Total, s.Clicks.Unique, s.Unsubscribes, s.Bounces.Hard, s.Bounces.Soft,
		s.Complaints, len(s.Series))
}
