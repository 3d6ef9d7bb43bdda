package campaigns_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/campaigns"
	"herald/consent"
	"herald/internal/workspace"
)

// statsFixture is a sent campaign with known engagement, built row by row.
type statsFixture struct {
	b       *cBundle
	c       campaigns.Campaign
	t0      time.Time        // the hour the campaign was sent in
	rcpt    map[int]int64    // recipient id by contact number (1..10)
	contact map[int]int64    // contact id by number
	links   map[string]int64 // link id by url
	addr    map[int]string   // address by number
	ctx     context.Context
}

// sentCampaign schedules a campaign to contacts c-1..c-10, fans it out and marks c-1..c-8 sent at
// t0, c-9 refused at the hand-off with a 5.1.1 hard bounce and c-10 refused for another reason.
func sentCampaign(t *testing.T, b *cBundle) *statsFixture {
	t.Helper()
	ctx := context.Background()
	f := &statsFixture{b: b, ctx: ctx, rcpt: map[int]int64{}, contact: map[int]int64{}, links: map[string]int64{}, addr: map[int]string{}}
	f.t0 = b.now.Truncate(time.Hour).Add(-5 * time.Hour)
	ids := b.contacts(t, b.ws, "c", 10, "")
	b.list(t, b.ws, "all", ids)
	f.c = b.scheduled(t, campaigns.CampaignInput{})
	if err := b.fanOut().Work(ctx, job(campaigns.FanOutArgs{CampaignID: f.c.ID})); err != nil {
		t.Fatal(err)
	}
	rows, err := b.pool.Query(ctx, `SELECT id, contact_id, address FROM campaign_recipients WHERE campaign_id = $1 ORDER BY contact_id`, f.c.ID)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	var rid, cid int64
	var addr string
	if _, err := pgx.ForEachRow(rows, []any{&rid, &cid, &addr}, func() error {
		n++
		f.rcpt[n], f.contact[n], f.addr[n] = rid, cid, addr
		return nil
	}); err != nil || n != 10 {
		t.Fatalf("%d recipients, %v", n, err)
	}
	_, err = b.pool.Exec(ctx, `
		UPDATE campaign_recipients SET
			status = CASE WHEN id = $2 OR id = $3 THEN 'failed' ELSE 'sent' END,
			reason = CASE WHEN id = $2 THEN 'hard_bounce' WHEN id = $3 THEN 'rejected' ELSE '' END,
			smtp_reply = CASE WHEN id = $2 THEN '550 5.1.1 no such user' WHEN id = $3 THEN '550 5.7.1 refused as spam' ELSE '250 ok' END,
			sent_at = CASE WHEN id = $2 OR id = $3 THEN NULL ELSE $4::timestamptz + interval '10 minutes' END,
			updated_at = $4::timestamptz + interval '10 minutes'
		WHERE campaign_id = $1`, f.c.ID, f.rcpt[9], f.rcpt[10], f.t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(ctx, `UPDATE campaigns SET status = 'sent', started_at = $2, finished_at = $3 WHERE id = $1`,
		f.c.ID, f.t0, f.t0.Add(20*time.Minute)); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"https://acme.example/1", "https://acme.example/2", "https://acme.example/3"} {
		var id int64
		if err := b.pool.QueryRow(ctx, `INSERT INTO campaign_links (campaign_id, url) VALUES ($1, $2) RETURNING id`, f.c.ID, u).Scan(&id); err != nil {
			t.Fatal(err)
		}
		f.links[u] = id
	}
	return f
}

// track stores a tracking event of contact number n, h hours (and a few minutes) after t0.
func (f *statsFixture) track(t *testing.T, n int, kind, link string, machine bool, h int) {
	t.Helper()
	var linkID *int64
	if link != "" {
		id := f.links[link]
		linkID = &id
	}
	_, err := f.b.pool.Exec(f.ctx, `INSERT INTO tracking_events (workspace_id, campaign_id, recipient_id, kind, link_id, at, machine)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, f.b.ws, f.c.ID, f.rcpt[n], kind, linkID, f.t0.Add(time.Duration(h)*time.Hour+15*time.Minute), machine)
	if err != nil {
		t.Fatal(err)
	}
}

// feedback stores a feedback event of contact number n, h hours after t0.
func (f *statsFixture) feedback(t *testing.T, n int, kind string, h int) {
	t.Helper()
	_, err := f.b.pool.Exec(f.ctx, `INSERT INTO feedback_events (workspace_id, kind, source, address_hash, campaign_id, recipient_id, at)
		VALUES ($1, $2, 'dsn', '\x00', $3, $4, $5)`, f.b.ws, kind, f.c.ID, f.rcpt[n], f.t0.Add(time.Duration(h)*time.Hour+20*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
}

// withdraw records a withdrawal of purpose by contact number n, h hours after t0.
func (f *statsFixture) withdraw(t *testing.T, n int, purpose, source string, h int) {
	t.Helper()
	err := pgx.BeginFunc(f.ctx, f.b.pool, func(tx pgx.Tx) error {
		return f.b.svc.Record(f.ctx, tx, &consent.Event{WorkspaceID: f.b.ws, ContactID: f.contact[n], Purpose: purpose,
			Action: consent.ActionWithdrawn, Source: source, LawfulBasis: consent.BasisConsent, Actor: "test",
			OccurredAt: f.t0.Add(time.Duration(h)*time.Hour + 30*time.Minute)})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (f *statsFixture) stats(t *testing.T, id int64) map[string]any {
	t.Helper()
	res := f.b.do(t, "GET", fmt.Sprintf("/v1/campaigns/%d/stats", id), nil)
	if res.Status != 200 {
		t.Fatalf("stats: %d %s", res.Status, res.Raw)
	}
	return res.Body
}

// jsonOf re-encodes a decoded JSON value, for comparing sub-objects as text.
func jsonOf(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func TestCampaignEngagementStats(t *testing.T) {
	t.Parallel()
	b := cSetup(t)
	f := sentCampaign(t, b)
	b.purpose(t, b.ws, "offers")
	l1, l2 := "https://acme.example/1", "https://acme.example/2"

	// Opens: c-1 twice by a person an hour later and once by a proxy at once; c-2 once; c-3 by a proxy.
	f.track(t, 1, "open", "", true, 0)
	f.track(t, 1, "open", "", false, 1)
	f.track(t, 1, "open", "", false, 1)
	f.track(t, 2, "open", "", false, 1)
	f.track(t, 3, "open", "", true, 0)
	// Clicks: c-1 on link 1 twice and link 2 once; c-4 (no open seen) on link 1; a scanner for c-5 on both.
	f.track(t, 1, "click", l1, false, 1)
	f.track(t, 1, "click", l1, false, 1)
	f.track(t, 1, "click", l2, false, 1)
	f.track(t, 4, "click", l1, false, 2)
	f.track(t, 5, "click", l1, true, 0)
	f.track(t, 5, "click", l2, true, 0)
	// Feedback: c-6 hard-bounced, c-7 soft-bounced twice, c-8 complained.
	f.feedback(t, 6, "hard_bounce", 1)
	f.feedback(t, 7, "soft_bounce", 1)
	f.feedback(t, 7, "soft_bounce", 2)
	f.feedback(t, 8, "complaint", 3)
	// Unsubscribes: c-2 withdraws news (counted); c-3 withdrew before it was sent (not); c-8's
	// complaint withdrawal (a complaint, not an unsubscribe); c-1 withdraws another purpose (not);
	// c-4 unsubscribes from all (counted, through the suppression list); c-5 withdraws news after
	// a later campaign of news reached it (credited to that one).
	f.withdraw(t, 2, "news", consent.SourcePreferenceCentre, 2)
	f.withdraw(t, 3, "news", consent.SourceAPI, -1)
	f.withdraw(t, 8, "news", consent.SourceComplaint, 3)
	f.withdraw(t, 1, "offers", consent.SourcePreferenceCentre, 2)
	if _, err := b.svc.Suppress(f.ctx, b.pool, consent.Suppression{WorkspaceID: b.ws, Address: f.addr[4],
		Reason: consent.ReasonUnsubscribedAll, Actor: consent.ActorRecipient}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(f.ctx, `UPDATE suppressions SET created_at = $2 WHERE workspace_id = $1`, b.ws, f.t0.Add(3*time.Hour+40*time.Minute)); err != nil {
		t.Fatal(err)
	}
	later := b.campaign(t, b.ws, campaigns.CampaignInput{})
	if _, err := b.pool.Exec(f.ctx, `UPDATE campaigns SET status = 'sent', started_at = $2 WHERE id = $1`, later.ID, f.t0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(f.ctx, `INSERT INTO campaign_recipients (campaign_id, contact_id, address, status, sent_at)
		VALUES ($1, $2, $3, 'sent', $4)`, later.ID, f.contact[5], f.addr[5], f.t0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	f.withdraw(t, 5, "news", consent.SourceOneClick, 4)

	s := f.stats(t, f.c.ID)
	for k, want := range map[string]string{
		"sent":         `8`,
		"failed":       `2`,
		"delivered":    `6`,
		"opens":        `{"human":{"total":3,"unique":2},"machine":{"total":2,"unique":2},"total":5,"unique":3}`,
		"unsubscribes": `2`,
		"bounces":      `{"hard":2,"hard_at_hand_off":1,"soft":1}`,
		"complaints":   `1`,
		"rates":        `{"bounce":30,"click_through":33.33,"click_to_open":66.67,"complaint":16.67,"delivery":75,"open":33.33,"unsubscribe":33.33}`,
	} {
		if got := jsonOf(t, s[k]); got != want {
			t.Errorf("%s = %s, want %s", k, got, want)
		}
	}
	clicks := s["clicks"].(map[string]any)
	if got := jsonOf(t, map[string]any{"total": clicks["total"], "unique": clicks["unique"], "human": clicks["human"], "machine": clicks["machine"]}); got !=
		`{"human":{"total":4,"unique":2},"machine":{"total":2,"unique":1},"total":6,"unique":3}` {
		t.Errorf("clicks = %s", got)
	}
	wantLinks := fmt.Sprintf(`[{"human":{"total":3,"unique":2},"id":%d,"machine":{"total":1,"unique":1},"total":4,"unique":3,"url":"https://acme.example/1"},`+
		`{"human":{"total":1,"unique":1},"id":%d,"machine":{"total":1,"unique":1},"total":2,"unique":2,"url":"https://acme.example/2"},`+
		`{"human":{"total":0,"unique":0},"id":%d,"machine":{"total":0,"unique":0},"total":0,"unique":0,"url":"https://acme.example/3"}]`,
		f.links[l1], f.links[l2], f.links["https://acme.example/3"])
	if got := jsonOf(t, clicks["links"]); got != wantLinks {
		t.Errorf("links = %s\nwant    %s", got, wantLinks)
	}
	hour := func(h int) string { return f.t0.Add(time.Duration(h) * time.Hour).UTC().Format(time.RFC3339) }
	wantSeries := `[` +
		`{"bounces":1,"clicks_human":0,"clicks_machine":2,"complaints":0,"hour":"` + hour(0) + `","opens_human":0,"opens_machine":2,"sends":8,"unsubscribes":0},` +
		`{"bounces":2,"clicks_human":3,"clicks_machine":0,"complaints":0,"hour":"` + hour(1) + `","opens_human":3,"opens_machine":0,"sends":0,"unsubscribes":0},` +
		`{"bounces":1,"clicks_human":1,"clicks_machine":0,"complaints":0,"hour":"` + hour(2) + `","opens_human":0,"opens_machine":0,"sends":0,"unsubscribes":1},` +
		`{"bounces":0,"clicks_human":0,"clicks_machine":0,"complaints":1,"hour":"` + hour(3) + `","opens_human":0,"opens_machine":0,"sends":0,"unsubscribes":1}]`
	if got := jsonOf(t, s["series"]); got != wantSeries {
		t.Errorf("series = %s\nwant     %s", got, wantSeries)
	}
	// The later campaign gets c-5's unsubscribe.
	if got := f.stats(t, later.ID)["unsubscribes"]; got != 1.0 {
		t.Errorf("later campaign's unsubscribes = %v, want 1", got)
	}

	// Another workspace's key sees no such campaign.
	other := b.workspace(t, "globex")
	keyB, err := workspace.CreateKey(f.ctx, b.pool, other, []string{workspace.ScopeCampaignsWrite})
	if err != nil {
		t.Fatal(err)
	}
	b.do(t, "GET", fmt.Sprintf("/v1/campaigns/%d/stats", f.c.ID), nil, keyB).RequireProblem(t, 404, "")
	for _, id := range []string{"0", "-1", "abc", "1e3", "99999999999999999999", "%0d%0a"} {
		b.do(t, "GET", "/v1/campaigns/"+id+"/stats", nil).RequireProblem(t, 404, "")
	}
}

// TestCampaignStatsEmpty: a draft has no engagement, and every rate is 0 rather than a division
// by zero.
func TestCampaignStatsEmpty(t *testing.T) {
	t.Parallel()
	b := cSetup(t)
	b.list(t, b.ws, "all", b.contacts(t, b.ws, "c", 2, ""))
	c := b.campaign(t, b.ws, campaigns.CampaignInput{})
	res := b.do(t, "GET", fmt.Sprintf("/v1/campaigns/%d/stats", c.ID), nil)
	if res.Status != 200 {
		t.Fatalf("%d %s", res.Status, res.Raw)
	}
	for k, want := range map[string]string{
		"delivered": `0`, "series": `[]`, "unsubscribes": `0`, "complaints": `0`,
		"rates":   `{"bounce":0,"click_through":0,"click_to_open":0,"complaint":0,"delivery":0,"open":0,"unsubscribe":0}`,
		"opens":   `{"human":{"total":0,"unique":0},"machine":{"total":0,"unique":0},"total":0,"unique":0}`,
		"bounces": `{"hard":0,"hard_at_hand_off":0,"soft":0}`,
	} {
		if got := jsonOf(t, res.Body[k]); got != want {
			t.Errorf("%s = %s, want %s", k, got, want)
		}
	}
	if links := res.Body["clicks"].(map[string]any)["links"]; jsonOf(t, links) != `[]` {
		t.Errorf("links = %s", jsonOf(t, links))
	}
}
