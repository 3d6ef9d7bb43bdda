package consent_test

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"herald/campaigns"
	"herald/consent"
	"herald/internal/workspace"
	"herald/mailer"
	"herald/tracking"
)

const day = 24 * time.Hour

// retentionWorker is the worker as cmd/herald wires it, on the bundle's clock and a small batch
// (so the tests cross batch boundaries).
func (b *bundle) retentionWorker(batch int) *consent.RetentionWorker {
	return &consent.RetentionWorker{DB: b.pool, Metrics: consent.NewRetentionMetrics(b.reg), Batch: batch,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return b.now },
		OptedOut: []consent.RetentionStep[consent.OptOutPurger]{
			{What: consent.RemovedOptedOutEvents, Purger: tracking.Retention{}},
			{What: consent.RemovedOptedOutRecipients, Purger: campaigns.Retention{}},
		},
		Aged: []consent.RetentionStep[consent.AgedPurger]{
			{What: consent.RemovedExpiredEvents, Purger: tracking.Retention{}},
			{What: consent.RemovedMessageBodies, Purger: mailer.Retention{}},
		},
		Workspace: []consent.WorkspacePurger{tracking.Retention{}, campaigns.Retention{}, mailer.Retention{}},
	}
}

// campaign inserts a sender and a campaign of the workspace and returns the campaign's id.
func campaign(t testing.TB, pool *pgxpool.Pool, workspaceID int64) int64 {
	t.Helper()
	var id int64
	err := pool.QueryRow(context.Background(), `
		WITH s AS (
			INSERT INTO senders (workspace_id, name, from_address, postal_address)
			VALUES ($1, 's' || (SELECT count(*) FROM senders), 'news@acme.example', '1 Main St') RETURNING id
		)
		INSERT INTO campaigns (workspace_id, name, purpose, template_name, template_version, sender_id, audience)
		SELECT $1, 'c', 'news', 't', 1, id, '{}' FROM s RETURNING id`, workspaceID).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// send inserts a campaign recipient row with events opens at the given times, and returns its id.
func send(t testing.TB, pool *pgxpool.Pool, workspaceID, campaignID, contactID int64, status string, events ...time.Time) int64 {
	t.Helper()
	ctx := context.Background()
	var id int64
	if err := pool.QueryRow(ctx, `INSERT INTO campaign_recipients (campaign_id, contact_id, address, status, smtp_reply)
		VALUES ($1, $2::bigint, 'person' || $2::text || '@example.com', $3, '250 2.0.0 ok person' || $2::text) RETURNING id`,
		campaignID, contactID, status).Scan(&id); err != nil {
		t.Fatal(err)
	}
	for _, at := range events {
		if _, err := pool.Exec(ctx, `INSERT INTO tracking_events (workspace_id, campaign_id, recipient_id, kind, at, ip, user_agent)
			VALUES ($1, $2, $3, 'open', $4, '192.0.2.0', 'Mail')`, workspaceID, campaignID, id, at); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

// TestRetentionOptedOut: a contact who opted out of all marketing 31 days ago (by withdrawing
// every purpose, or by an unsubscribed_all suppression) loses the events and personal fields of
// its final sends; one who did 29 days ago, one who still has a purpose granted, and one who
// withdrew only tracking keep them; open sends keep their address. A rerun removes nothing.
func TestRetentionOptedOut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	ws := b.ensureWorkspace(t, "acme")
	b.purpose(t, ws, "news")
	b.purpose(t, ws, "offers")
	if _, err := consent.EnsureTrackingPurpose(ctx, b.pool, ws); err != nil {
		t.Fatal(err)
	}
	ago := func(d time.Duration) time.Time { return b.now.Add(-d) }
	grant := func(c int64, purpose string, at time.Time) {
		b.record(t, consent.Event{WorkspaceID: ws, ContactID: c, Purpose: purpose, Action: consent.ActionGranted, OccurredAt: at})
	}
	withdraw := func(c int64, purpose string, at time.Time) {
		b.record(t, consent.Event{WorkspaceID: ws, ContactID: c, Purpose: purpose, Action: consent.ActionWithdrawn, OccurredAt: at})
	}
	out31 := b.contact(t, ws, "out31@example.com")
	grant(out31, "news", ago(60*day))
	grant(out31, "offers", ago(60*day))
	withdraw(out31, "news", ago(40*day))
	withdraw(out31, "offers", ago(31*day))
	out29 := b.contact(t, ws, "out29@example.com")
	grant(out29, "news", ago(60*day))
	withdraw(out29, "news", ago(29*day))
	oneLeft := b.contact(t, ws, "oneleft@example.com")
	grant(oneLeft, "news", ago(60*day))
	grant(oneLeft, "offers", ago(60*day))
	withdraw(oneLeft, "news", ago(40*day))
	trackingOnly := b.contact(t, ws, "tracking@example.com")
	grant(trackingOnly, "news", ago(60*day))
	withdraw(trackingOnly, consent.TrackingPurpose, ago(40*day))
	unsubscribed := b.contact(t, ws, "Unsub@Example.com")
	for _, sp := range []struct {
		addr string
		at   time.Time
	}{{"unsub@example.com", ago(31 * day)}, {"recent@example.com", ago(2 * day)}} {
		if _, err := b.svc.Suppress(ctx, b.pool, consent.Suppression{WorkspaceID: ws, Address: sp.addr, Reason: consent.ReasonUnsubscribedAll}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.pool.Exec(ctx, `UPDATE suppressions SET created_at = $2 WHERE address = $1`, sp.addr, sp.at); err != nil {
			t.Fatal(err)
		}
	}
	recent := b.contact(t, ws, "recent@example.com")

	c1, c2 := campaign(t, b.pool, ws), campaign(t, b.pool, ws)
	ev := []time.Time{ago(50 * day), ago(45 * day)}
	due := map[int64]bool{}
	for _, c := range []int64{out31, out29, oneLeft, trackingOnly, unsubscribed, recent} {
		id := send(t, b.pool, ws, c1, c, "sent", ev...)
		due[id] = c == out31 || c == unsubscribed
	}
	open := send(t, b.pool, ws, c2, out31, "deferred")

	w := b.retentionWorker(2)
	removed, err := w.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if removed[consent.RemovedOptedOutEvents] != 4 || removed[consent.RemovedOptedOutRecipients] != 2 {
		t.Fatalf("removed %v; want 4 events and 2 sends", removed)
	}
	rows, err := b.pool.Query(ctx, `SELECT r.id, r.address, r.smtp_reply, r.status, (SELECT count(*) FROM tracking_events e WHERE e.recipient_id = r.id)
		FROM campaign_recipients r ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, events int64
		var addr, reply, status string
		if err := rows.Scan(&id, &addr, &reply, &status, &events); err != nil {
			t.Fatal(err)
		}
		switch {
		case id == open:
			if addr == "" || status != "deferred" {
				t.Errorf("open send %d emptied: %q %s", id, addr, status)
			}
		case due[id]:
			if addr != "" || reply != "" || events != 0 || status != "sent" {
				t.Errorf("send %d of an opted-out contact: %q %q %s, %d events", id, addr, reply, status, events)
			}
		default:
			if addr == "" || reply == "" || events != 2 {
				t.Errorf("send %d emptied too soon: %q %q, %d events", id, addr, reply, events)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(w.Metrics.Removed.WithLabelValues(consent.RemovedOptedOutEvents)); got != 4 {
		t.Fatalf("metric %v", got)
	}
	again, err := w.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for what, n := range again {
		if n != 0 {
			t.Fatalf("rerun removed %d %s", n, what)
		}
	}
	// Two days later the 29-day opt-out is due too.
	b.now = b.now.Add(2 * day)
	if removed, err = w.Run(ctx); err != nil || removed[consent.RemovedOptedOutRecipients] != 1 || removed[consent.RemovedOptedOutEvents] != 2 {
		t.Fatalf("two days later: %v %v", removed, err)
	}
}

// TestRetentionAged: events 13 months + 1 day old go and 13 months - 1 day old stay (per the
// workspace's policy: a shorter one removes more); bodies of final messages sent 31 days ago are
// emptied, queued ones and those 29 days old untouched.
func TestRetentionAged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	ws, short := b.ensureWorkspace(t, "acme"), b.ensureWorkspace(t, "short")
	ago := func(d time.Duration) time.Time { return b.now.Add(-d) }
	for _, w := range []int64{ws, short} {
		c := b.contact(t, w, "kept"+strings.Repeat("x", int(w))+"@example.com")
		send(t, b.pool, w, campaign(t, b.pool, w), c, "sent", ago(396*day), ago(396*day), ago(396*day), ago(394*day), ago(60*day))
	}
	if err := consent.RetentionPolicyPut(ctx, b.pool, short, consent.RetentionPolicy{OptedOutDays: 30, TrackingDays: 90,
		BodyDays: 30, DeletionGraceDays: 7}, b.now); err != nil {
		t.Fatal(err)
	}
	type msg struct {
		status      string
		created     time.Time
		sent        *time.Time
		wantEmptied bool
	}
	sent31, sent29 := ago(31*day), ago(29*day)
	msgs := []msg{
		{"sent", ago(32 * day), &sent31, true},
		{"sent", ago(31 * day), &sent29, false}, // created 31 days ago, sent 29
		{"failed", ago(40 * day), nil, true},
		{"suppressed", ago(31 * day), nil, true},
		{"queued", ago(31 * day), nil, false},
		{"deferred", ago(40 * day), nil, false},
		{"sent", ago(2 * day), &sent29, false},
	}
	for i, m := range msgs {
		if _, err := b.pool.Exec(ctx, `INSERT INTO messages (id, workspace_id, to_address, from_address, subject, html_body, text_body,
			headers, message_id, status, created_at, sent_at)
			VALUES (gen_random_uuid(), $1, 'p@example.com', 'n@acme.example', 's', '<p>Hi Pat</p>', 'Hi Pat',
				'{"X-Customer": "Pat"}', 'm' || $2::text || '@acme.example', $3, $4, $5)`, ws, strconv.Itoa(i), m.status, m.created, m.sent); err != nil {
			t.Fatal(err)
		}
		// Each carries an attachment (as a data export does), which goes with the body.
		if _, err := b.pool.Exec(ctx, `INSERT INTO message_attachments (message_id, position, filename, content_type, content)
			SELECT id, 0, 'export.json', 'application/json', '{"name":"Pat"}' FROM messages WHERE message_id = 'm' || $1::text || '@acme.example'`,
			strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	w := b.retentionWorker(2)
	removed, err := w.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// acme: the 3 of more than 395 days; short (90 days): those and the 394-day one.
	if removed[consent.RemovedExpiredEvents] != 3+4 || removed[consent.RemovedMessageBodies] != 3 {
		t.Fatalf("removed %v", removed)
	}
	if n := b.count(t, `SELECT count(*) FROM tracking_events WHERE workspace_id = $1 AND at = $2`, ws, ago(394*day)); n != 1 {
		t.Fatalf("the 394-day event of acme: %d", n)
	}
	if n := b.count(t, `SELECT count(*) FROM tracking_events WHERE workspace_id = $1`, short); n != 1 {
		t.Fatalf("short keeps %d events, want 1", n)
	}
	rows, err := b.pool.Query(ctx, `SELECT message_id, html_body = '' AND text_body = '' AND headers = '{}', subject,
		NOT EXISTS (SELECT 1 FROM message_attachments a WHERE a.message_id = m.id) FROM messages m ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; rows.Next(); i++ {
		var id, subject string
		var emptied, noAttachment bool
		if err := rows.Scan(&id, &emptied, &subject, &noAttachment); err != nil {
			t.Fatal(err)
		}
		if emptied != msgs[i].wantEmptied || noAttachment != msgs[i].wantEmptied || subject != "s" {
			t.Errorf("message %d (%s %v): emptied %v, attachment gone %v, subject %q", i, msgs[i].status, msgs[i].created, emptied, noAttachment, subject)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(w.Metrics.Removed.WithLabelValues(consent.RemovedMessageBodies)); got != 3 {
		t.Fatalf("metric %v", got)
	}
	if again, err := w.Run(ctx); err != nil || again[consent.RemovedExpiredEvents] != 0 || again[consent.RemovedMessageBodies] != 0 {
		t.Fatalf("rerun: %v %v", again, err)
	}
}

// TestRetentionDeletedWorkspace: a deleted workspace's keys stop at once, its sending stops, and
// the job purges it once its grace period has passed, leaving other workspaces untouched.
func TestRetentionDeletedWorkspace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	ids := map[string]int64{}
	keys := map[string]string{}
	for _, name := range []string{"gone", "recent", "kept"} {
		ws := b.ensureWorkspace(t, name)
		ids[name] = ws
		b.purpose(t, ws, "news")
		c := b.contact(t, ws, name+"@example.com")
		b.record(t, consent.Event{WorkspaceID: ws, ContactID: c, Purpose: "news", Action: consent.ActionGranted})
		camp := campaign(t, b.pool, ws)
		for i := 0; i < 3; i++ {
			send(t, b.pool, ws, camp, b.contact(t, ws, name+strings.Repeat("i", i+1)+"@example.com"), "queued", b.now, b.now)
		}
		if _, err := b.pool.Exec(ctx, `INSERT INTO messages (id, workspace_id, contact_id, to_address, from_address, subject, message_id)
			VALUES (gen_random_uuid(), $1, $2, 'p@example.com', 'n@acme.example', 's', $3)`, ws, c, name+"@m"); err != nil {
			t.Fatal(err)
		}
		key, err := workspace.CreateKey(ctx, b.pool, ws, []string{workspace.ScopeAdmin})
		if err != nil {
			t.Fatal(err)
		}
		keys[name] = key
	}
	for name, at := range map[string]time.Time{"gone": b.now.Add(-8 * day), "recent": b.now.Add(-6 * day)} {
		if _, err := workspace.SoftDelete(ctx, b.pool, name, at); err != nil {
			t.Fatal(err)
		}
		if _, err := workspace.Authenticate(ctx, b.pool, keys[name]); err == nil {
			t.Fatalf("key of deleted workspace %s still works", name)
		}
		if _, err := campaigns.CancelWorkspace(ctx, b.pool, ids[name]); err != nil {
			t.Fatal(err)
		}
		if n, err := mailer.StopWorkspace(ctx, b.pool, ids[name]); err != nil || n != 1 {
			t.Fatalf("stop messages: %d %v", n, err)
		}
	}
	if _, err := workspace.SoftDelete(ctx, b.pool, "gone", b.now); err == nil {
		t.Fatal("deleted twice")
	}
	if _, err := workspace.Authenticate(ctx, b.pool, keys["kept"]); err != nil {
		t.Fatal(err)
	}
	w := b.retentionWorker(2)
	removed, err := w.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// gone: 6 events, 3 sends, 1 campaign, 1 message, 4 contacts, and its consent rows, in batches.
	if removed[consent.RemovedWorkspaces] != 1 || removed[consent.RemovedWorkspaceRows] < 6+3+1+1+4 {
		t.Fatalf("removed %v", removed)
	}
	for _, table := range []string{"tracking_events", "campaigns", "messages", "contacts",
		"consent_events", "consent_state", "audit_log", "api_keys", "purposes"} {
		if n := b.count(t, `SELECT count(*) FROM `+table+` WHERE workspace_id = $1`, ids["gone"]); n != 0 {
			t.Errorf("%d rows of the purged workspace in %s", n, table)
		}
		for _, name := range []string{"recent", "kept"} {
			if n := b.count(t, `SELECT count(*) FROM `+table+` WHERE workspace_id = $1`, ids[name]); n == 0 {
				t.Errorf("workspace %s lost its %s", name, table)
			}
		}
	}
	// campaign_recipients has no workspace_id: the 3 sends of each of the two others are left.
	if n := b.count(t, `SELECT count(*) FROM campaign_recipients`); n != 6 {
		t.Fatalf("%d sends left; want the 6 of recent and kept", n)
	}
	if n := b.count(t, `SELECT count(*) FROM workspaces WHERE id = $1`, ids["gone"]); n != 0 {
		t.Fatal("the workspace row is still there")
	}
	if got := testutil.ToFloat64(w.Metrics.Removed.WithLabelValues(consent.RemovedWorkspaces)); got != 1 {
		t.Fatalf("metric %v", got)
	}
	if n, err := consent.Verify(ctx, b.pool, ids["kept"]); err != nil || n != 1 {
		t.Fatalf("ledger of kept: %d %v", n, err)
	}
	// Two days later the other one goes too.
	b.now = b.now.Add(2 * day)
	if removed, err = w.Run(ctx); err != nil || removed[consent.RemovedWorkspaces] != 1 {
		t.Fatalf("two days later: %v %v", removed, err)
	}
	if n := b.count(t, `SELECT count(*) FROM workspaces`); n != 1 {
		t.Fatalf("%d workspaces left", n)
	}
}
