package tracking

import (
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"herald/campaigns"
	"herald/consent"
)

func TestFeedbackHardBounceSuppressesEveryStream(t *testing.T) {
	t.Parallel()
	b := fbSetup(t)
	ws := b.workspace(t)
	cid, email := b.contact(t, ws, "news")
	mid, seq, _ := b.message(t, ws, cid, email)

	out, err := b.fb.Process(b.ctx, Report{WorkspaceID: ws, Kind: KindHardBounce, Source: SourceDSN,
		Target: &BounceTarget{WorkspaceID: ws, Kind: VERPMessage, ID: seq}, Status: "5.1.1",
		Detail: "smtp; 550 5.1.1 <" + email + ">: Recipient address rejected"})
	if err != nil {
		t.Fatal(err)
	}
	if !out.Suppressed || out.MessageID != mid {
		t.Fatalf("outcome %+v; want suppressed, message %s", out, mid)
	}
	if got := b.suppression(t, ws, email); got != consent.ReasonHardBounce {
		t.Fatalf("suppression reason %q, want hard_bounce", got)
	}
	var detail, status string
	var hashed []byte
	if err := b.pool.QueryRow(b.ctx, `SELECT detail, status, address_hash FROM feedback_events WHERE workspace_id = $1`, ws).
		Scan(&detail, &status, &hashed); err != nil {
		t.Fatal(err)
	}
	if status != "5.1.1" || detail != "smtp; 550 5.1.1 <[address]>: Recipient address rejected" {
		t.Fatalf("feedback row status %q detail %q: the address must not be kept in clear", status, detail)
	}
	// Transactional mail to the address is now refused at send.
	for _, stream := range []string{"transactional", "marketing"} {
		err := pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
			d, err := b.svc.Decide(b.ctx, tx, consent.Request{WorkspaceID: ws, ContactID: &cid, Address: email, Stream: stream, Purpose: "news"})
			if err == nil && d.Allowed {
				t.Errorf("%s send to a hard-bounced address allowed", stream)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(b.fb.Metrics.Bounces.WithLabelValues("hard", SourceDSN)); got != 1 {
		t.Fatalf("herald_bounces_total{hard,dsn} = %v, want 1", got)
	}
}

func TestFeedbackSoftBounceWindow(t *testing.T) {
	t.Parallel()
	b := fbSetup(t)
	ws := b.workspace(t)
	soft := func(tb testing.TB, address string, at time.Time) Outcome {
		tb.Helper()
		out, err := b.fb.Process(b.ctx, Report{WorkspaceID: ws, Kind: KindSoftBounce, Source: SourceSendGrid,
			Address: address, Status: "4.2.2", At: at})
		if err != nil {
			tb.Fatal(err)
		}
		return out
	}
	start := b.now

	// Two soft bounces within the window: not suppressed.
	_, two := b.contact(t, ws)
	soft(t, two, start.Add(-2*time.Hour))
	soft(t, two, start.Add(-time.Hour))
	if got := b.suppression(t, ws, two); got != "" {
		t.Fatalf("2 soft bounces suppressed the address (%s)", got)
	}

	// One old bounce (8 days ago, outside the 7-day window) and two recent: still not.
	_, old := b.contact(t, ws)
	soft(t, old, start.Add(-8*24*time.Hour))
	soft(t, old, start.Add(-time.Hour))
	if out := soft(t, old, start); out.Suppressed || b.suppression(t, ws, old) != "" {
		t.Fatal("a soft bounce outside the window was counted")
	}

	// Three within the window: the third suppresses.
	_, three := b.contact(t, ws)
	soft(t, three, start.Add(-6*24*time.Hour))
	soft(t, three, start.Add(-time.Hour))
	if out := soft(t, three, start); !out.Suppressed {
		t.Fatal("the third soft bounce within the window did not suppress")
	}
	if got := b.suppression(t, ws, three); got != consent.ReasonHardBounce {
		t.Fatalf("suppression reason %q, want hard_bounce", got)
	}

	// The clock moves on 7 days: the old ones leave the window.
	b.now = start.Add(7 * 24 * time.Hour)
	if out := soft(t, two, b.now); out.Suppressed {
		t.Fatal("soft bounces that left the window were counted")
	}

	// A workspace limit of 2 in 1 day.
	if _, err := consent.SettingsPut(b.ctx, b.pool, consent.Settings{WorkspaceID: ws, SoftBounceLimit: 2, SoftBounceWindow: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	_, lim := b.contact(t, ws)
	soft(t, lim, b.now.Add(-25*time.Hour))
	soft(t, lim, b.now.Add(-time.Hour))
	if b.suppression(t, ws, lim) != "" {
		t.Fatal("workspace window of 1 day not applied")
	}
	if out := soft(t, lim, b.now); !out.Suppressed {
		t.Fatal("workspace limit of 2 not applied")
	}
}

func TestFeedbackComplaintWithdrawsMarketing(t *testing.T) {
	t.Parallel()
	b := fbSetup(t)
	ws := b.workspace(t)
	cid, email := b.contact(t, ws, "news", "offers")
	campaign, rcpt := b.campaignRecipient(t, ws, cid, email)

	// The complaint comes from SES, naming the campaign's Message-ID.
	mid := campaigns.MessageID(b.svc.Keys, campaign, rcpt, "mid.herald.example")
	out, err := b.fb.Process(b.ctx, Report{WorkspaceID: ws, Kind: KindComplaint, Source: SourceSES, MessageID: "<" + mid + ">",
		Address: "someone-else@example.net", ProviderEventID: "fb-1/0"})
	if err != nil {
		t.Fatal(err)
	}
	if out.CampaignID != campaign || out.RecipientID != rcpt || out.Withdrawn != 2 || !out.Suppressed {
		t.Fatalf("outcome %+v; want campaign %d recipient %d, 2 withdrawals", out, campaign, rcpt)
	}
	states, err := b.svc.States(b.ctx, b.pool, ws, cid)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range states {
		if st.Status != consent.ActionWithdrawn || st.Source != consent.SourceComplaint {
			t.Fatalf("state %+v; want withdrawn by complaint", st)
		}
	}
	if got := b.suppression(t, ws, email); got != consent.ReasonComplaint {
		t.Fatalf("suppression %q, want complaint", got)
	}
	if got := b.suppression(t, ws, "someone-else@example.net"); got != "" {
		t.Fatal("the report's address was acted on although the Message-ID named the row")
	}
	if n, err := consent.Verify(b.ctx, b.pool, ws); err != nil || n < 4 {
		t.Fatalf("consent verify: %d events, %v", n, err)
	}
	var status string
	var fbCampaign, fbRecipient int64
	if err := b.pool.QueryRow(b.ctx, `SELECT cr.status, f.campaign_id, f.recipient_id FROM feedback_events f
		JOIN campaign_recipients cr ON cr.id = f.recipient_id WHERE f.workspace_id = $1`, ws).Scan(&status, &fbCampaign, &fbRecipient); err != nil {
		t.Fatal(err)
	}
	if status != "sent" || fbCampaign != campaign || fbRecipient != rcpt {
		t.Fatalf("recipient status %q, feedback names %d/%d", status, fbCampaign, fbRecipient)
	}
	// The same event again (a provider retry) is counted once and changes nothing.
	again, err := b.fb.Process(b.ctx, Report{WorkspaceID: ws, Kind: KindComplaint, Source: SourceSES, MessageID: mid, ProviderEventID: "fb-1/0"})
	if err != nil || !again.Duplicate {
		t.Fatalf("retry: %+v, %v; want duplicate", again, err)
	}
	if n := b.feedbackRows(t, ws, KindComplaint); n != 1 {
		t.Fatalf("%d complaint rows, want 1", n)
	}
	if got := testutil.ToFloat64(b.fb.Metrics.Complaints.WithLabelValues(SourceSES)); got != 1 {
		t.Fatalf("herald_complaints_total{ses} = %v, want 1", got)
	}
}

func TestFeedbackCrossWorkspace(t *testing.T) {
	t.Parallel()
	b := fbSetup(t)
	wsA, wsB := b.workspace(t), b.workspace(t)
	cid, email := b.contact(t, wsA)
	campaign, rcpt := b.campaignRecipient(t, wsA, cid, email)
	_, seq, msgID := b.message(t, wsA, cid, email)
	mid := campaigns.MessageID(b.svc.Keys, campaign, rcpt, "d")
	for name, r := range map[string]Report{
		"verp recipient of A":   {Target: &BounceTarget{WorkspaceID: wsB, Kind: VERPRecipient, ID: rcpt}},
		"verp message of A":     {Target: &BounceTarget{WorkspaceID: wsB, Kind: VERPMessage, ID: seq}},
		"target of A, report B": {Target: &BounceTarget{WorkspaceID: wsA, Kind: VERPMessage, ID: seq}},
		"campaign message-id":   {MessageID: mid},
		"message-id of A":       {MessageID: msgID},
		"nothing at all":        {},
		"bad address":           {Address: "not an address\r\nBcc: x@y"},
	} {
		r.WorkspaceID, r.Kind, r.Source = wsB, KindHardBounce, SourceSendGrid
		if _, err := b.fb.Process(b.ctx, r); !errors.Is(err, ErrUnmatched) {
			t.Errorf("%s: %v, want ErrUnmatched", name, err)
		}
	}
	if b.suppression(t, wsA, email) != "" || b.suppression(t, wsB, email) != "" {
		t.Fatal("a report of another workspace suppressed an address")
	}
	if _, err := b.fb.Process(b.ctx, Report{WorkspaceID: wsA, Kind: "bogus", Source: SourceDSN}); err == nil || errors.Is(err, ErrUnmatched) {
		t.Fatalf("unknown kind: %v", err)
	}
}

func TestCleanAndRedact(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"a\r\nb\tc", "a b c"},
		{"550 5.1.1 <x@y.example>: no", "550 5.1.1 <[address]>: no"},
		{"user x.y+z@sub.example.com unknown", "user [address] unknown"},
		{"bad \xff utf8", "bad utf8"},
	} {
		if got := clean(redactAddresses(tc.in), 100); got != tc.want {
			t.Errorf("clean(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := clean("aaaa bbbb", 6); got != "aaaa b" {
		t.Errorf("cap: %q", got)
	}
}
