package consent_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/campaigns"
	"herald/consent"
	"herald/mailer"
	"herald/tracking"
)

// Sizes of BenchmarkErase: the erased contact's messages and tracking events (over benchCampaigns
// campaigns), and the other contacts' rows around them.
const (
	benchMessages   = 1000
	benchEvents     = 10000
	benchCampaigns  = 50
	benchBackground = 100 // other contacts, each with as many rows
)

// seedHeavy writes a contact with benchMessages messages, one send in each of the workspace's
// campaigns, two ledger events with evidence and a list membership; it returns the contact's id.
// seedEvents gives the sends their tracking events.
func seedHeavy(tb testing.TB, pool *pgxpool.Pool, svc *consent.Service, ws, list int64, n int) int64 {
	tb.Helper()
	ctx := context.Background()
	email := fmt.Sprintf("person%d@example.com", n)
	var id int64
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO contacts (workspace_id, external_id, email, name) VALUES ($1, $2, $3, $4) RETURNING id`,
			ws, fmt.Sprintf("crm-%d", n), email, fmt.Sprintf("Person %d", n)).Scan(&id); err != nil {
			return err
		}
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO list_members (workspace_id, list_id, contact_id) VALUES ($1, $2, $3)`, ws, list, id)
		b.Queue(`INSERT INTO messages (id, workspace_id, contact_id, to_address, to_name, from_address, subject, html_body, text_body,
				message_id, status, history, sent_at)
			SELECT gen_random_uuid(), $1, $2, $3, 'Person', 'shop@acme.test', 'Order ' || g, '<p>Hello Person, order ' || g || '</p>',
				'Hello Person, order ' || g, gen_random_uuid()::text || '@herald.test', 'sent',
				jsonb_build_array(jsonb_build_object('status', 'queued', 'at', now()),
					jsonb_build_object('status', 'sent', 'detail', '250 ok <' || $3 || '>', 'at', now())), now()
			FROM generate_series(1, $4) g`, ws, id, email, benchMessages)
		b.Queue(`INSERT INTO campaign_recipients (campaign_id, contact_id, address, status, smtp_reply, sent_at)
			SELECT c.id, $2, $3, 'sent', '250 ok <' || $3 || '>', now() FROM campaigns c WHERE c.workspace_id = $1`, ws, id, email)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		ev := &consent.Evidence{IP: "198.51.100.7", UserAgent: "Mozilla/5.0 bench", Address: email}
		return svc.RecordAll(ctx, tx, []*consent.Event{
			{WorkspaceID: ws, ContactID: id, Purpose: "news", Action: consent.ActionGranted, Source: consent.SourceAPI,
				LawfulBasis: consent.BasisConsent, NoticeVersion: 1, Actor: "bench", Evidence: ev},
			{WorkspaceID: ws, ContactID: id, Purpose: "offers", Action: consent.ActionGranted, Source: consent.SourceAPI,
				LawfulBasis: consent.BasisConsent, NoticeVersion: 1, Actor: "bench", Evidence: ev},
		})
	})
	if err != nil {
		tb.Fatalf("seed contact %d: %v", n, err)
	}
	return id
}

// seedEvents writes benchEvents tracking events for each contact in ids, spread over its sends
// and interleaved with the other contacts' as opens arrive in a campaign: time step by step, each
// step one event per send of every contact.
func seedEvents(tb testing.TB, pool *pgxpool.Pool, ws int64, ids []int64) {
	tb.Helper()
	_, err := pool.Exec(context.Background(), `INSERT INTO tracking_events (workspace_id, campaign_id, recipient_id, kind, at, ip, user_agent)
		SELECT $1, r.campaign_id, r.id, 'open', now() - g * interval '1 second', '198.51.100.' || (g % 250), 'Mozilla/5.0 bench'
		FROM generate_series(1, $3) g, campaign_recipients r
		WHERE r.campaign_id = ANY (ARRAY(SELECT id FROM campaigns WHERE workspace_id = $1)) AND r.contact_id = ANY ($2)
		ORDER BY g, r.campaign_id, r.contact_id`, ws, ids, benchEvents/benchCampaigns)
	if err != nil {
		tb.Fatalf("seed events: %v", err)
	}
}

// BenchmarkErase erases 5 contacts (per b.N) holding 1,000 messages and 10,000 tracking events
// each, among 100 other such contacts (105,000 messages, 1,050,000 events in all), through
// Rights.Erase, one transaction each, commit included, and reports the median and the slowest in
// ms/erase.
func BenchmarkErase(b *testing.B) {
	bb := setup(b)
	ctx := context.Background()
	ws := bb.ensureWorkspace(b, "bench")
	for _, name := range []string{"news", "offers"} {
		bb.purpose(b, ws, name)
	}
	var list, sender int64
	err := pgx.BeginFunc(ctx, bb.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO lists (workspace_id, name) VALUES ($1, 'all') RETURNING id`, ws).Scan(&list); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `INSERT INTO senders (workspace_id, name, from_address, postal_address)
			VALUES ($1, 'main', 'news@acme.test', '1 Main St') RETURNING id`, ws).Scan(&sender); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO templates (workspace_id, name, version, subject, text) VALUES ($1, 'nl', 1, 'News', 'x')`, ws); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO campaigns (workspace_id, name, purpose, template_name, template_version, sender_id, audience, status)
			SELECT $1, 'Campaign ' || g, 'news', 'nl', 1, $2, '{}', 'sent' FROM generate_series(1, $3) g`, ws, sender, benchCampaigns)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	const perRound = 5
	var ids, targets []int64
	for i := range benchBackground + perRound*b.N {
		id := seedHeavy(b, bb.pool, bb.svc, ws, list, i)
		ids = append(ids, id)
		if i%(benchBackground/perRound+1) == 0 && len(targets) < perRound*b.N {
			targets = append(targets, id)
		}
	}
	seedEvents(b, bb.pool, ws, ids)
	if _, err := bb.pool.Exec(ctx, `VACUUM ANALYZE`); err != nil {
		b.Fatal(err)
	}
	rights := consent.NewRights(bb.svc, nil, mailer.RightsPart{}, campaigns.RightsPart{}, tracking.RightsPart{})
	bb.svc.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	var times []time.Duration
	b.ResetTimer()
	for i := range b.N {
		for _, id := range targets[i*perRound : (i+1)*perRound] {
			start := time.Now()
			var er consent.Erasure
			err := pgx.BeginFunc(ctx, bb.pool, func(tx pgx.Tx) error {
				var err error
				er, err = rights.Erase(ctx, tx, ws, id, consent.RequestChannelAPI, "bench")
				return err
			})
			times = append(times, time.Since(start))
			if err != nil {
				b.Fatal(err)
			}
			if er.Removed["messages"] != benchMessages || er.Removed["tracking"] != benchEvents {
				b.Fatalf("erased %v", er.Removed)
			}
		}
	}
	b.StopTimer()
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "ms/erase")
	b.ReportMetric(float64(times[len(times)-1].Microseconds())/1000, "max-ms/erase")
	b.ReportMetric(0, "ns/op")
}
