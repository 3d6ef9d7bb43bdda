package campaigns_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"herald/campaigns"
	"herald/consent"
	"herald/internal/config"
	"herald/internal/dbtest"
	"herald/internal/smtpcapture"
	"herald/mailer"
	"herald/templates"
)

// sendBundle is what a batch-send test works with: its own database, a capture SMTP server, and
// a SendBatchWorker wired as cmd/herald wires it.
type sendBundle struct {
	pool    *pgxpool.Pool
	svc     *consent.Service
	smtp    *smtpcapture.Server
	worker  *campaigns.SendBatchWorker
	writer  *campaigns.OutcomeWriter
	ws      int64
	purpose consent.Purpose
	n       int
}

type sendOpts struct {
	dataHook func(*smtpcapture.Message) error
	stateTTL time.Duration
}

const sendTestBase = "https://herald.example"

func sendSetup(t testing.TB, o sendOpts) *sendBundle {
	t.Helper()
	ctx := context.Background()
	b := &sendBundle{pool: dbtest.NewPool(t)}
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	b.svc = &consent.Service{Keys: consent.DevKeys(), Metrics: consent.NewMetrics(reg), Logger: logger}
	srv, err := smtpcapture.Start(smtpcapture.Options{DataHook: o.dataHook, Keep: 100000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	b.smtp = srv
	relay, err := mailer.NewRelay(mailer.RelayOptions{SMTP: config.SMTP{Host: "127.0.0.1", Port: srv.Port(), TLS: config.TLSNone},
		Timeout: 5 * time.Second, Size: 8, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(relay.Close)
	b.writer = &campaigns.OutcomeWriter{DB: b.pool, Logger: logger}
	t.Cleanup(b.writer.Close)
	b.worker = &campaigns.SendBatchWorker{DB: b.pool, Consent: b.svc, Relay: relay,
		States:   &campaigns.StateCache{DB: b.pool, TTL: o.stateTTL, BaseURL: sendTestBase, InboundDomain: "herald.example", Logger: logger},
		Outcomes: b.writer, Metrics: mailer.NewMetrics(reg), Logger: logger, MessageIDDomain: "mid.herald.example"}
	if err := b.pool.QueryRow(ctx, `INSERT INTO workspaces (name) VALUES ('acme') RETURNING id`).Scan(&b.ws); err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		b.purpose, _, err = consent.PurposeSave(ctx, tx, consent.Purpose{WorkspaceID: b.ws, Name: "news",
			Title: "Acme News", Notice: "Monthly news."})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// contact creates a contact; with grant it also records a grant of the purpose in the ledger.
func (b *sendBundle) contact(t testing.TB, email, name string, grant bool) int64 {
	t.Helper()
	ctx := context.Background()
	b.n++
	var id int64
	err := b.pool.QueryRow(ctx, `INSERT INTO contacts (workspace_id, external_id, email, name, attributes)
		VALUES ($1, $2, $3, $4, '{"plan": "gold"}') RETURNING id`, b.ws, fmt.Sprintf("ext-%d", b.n), email, name).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	if grant {
		b.consent(t, id, consent.ActionGranted)
	}
	return id
}

func (b *sendBundle) consent(t testing.TB, contactID int64, action string) {
	t.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		return b.svc.Record(ctx, tx, &consent.Event{WorkspaceID: b.ws, ContactID: contactID, Purpose: "news",
			Action: action, Source: consent.SourceAPI, LawfulBasis: consent.BasisConsent, Actor: "test"})
	})
	if err != nil {
		t.Fatal(err)
	}
}

const sendTestHTML = `<p>Hello {{.contact.name}} ({{index .contact.attributes "plan"}})</p>` +
	`<p><a href="{{unsubscribe_url}}">Unsubscribe</a></p><p>{{postal_address}}</p>`

type campaignOpts struct {
	html, text           string
	rate, domainRate     int
	status               string
	fanoutNotDone        bool
	withoutTemplateCheck bool // store the template as is (a template that escaped the rule)
}

// campaign creates a sending campaign of the workspace (template, sender and row, as the campaign
// API leaves them once the fan-out has run) and returns its id.
func (b *sendBundle) campaign(t testing.TB, o campaignOpts) int64 {
	t.Helper()
	ctx := context.Background()
	if o.html == "" && o.text == "" {
		o.html = sendTestHTML
	}
	if o.status == "" {
		o.status = "sending"
	}
	b.n++
	name := fmt.Sprintf("tpl-%d", b.n)
	tpl, err := templates.Create(ctx, b.pool, b.ws, templates.Input{Name: name, Subject: "News for {{.contact.first_name}}",
		HTML: o.html, Text: o.text})
	if err != nil {
		t.Fatal(err)
	}
	if !o.withoutTemplateCheck {
		if err := templates.CheckMarketing(tpl); err != nil {
			t.Fatal(err)
		}
	}
	var sender, id int64
	err = b.pool.QueryRow(ctx, `INSERT INTO senders (workspace_id, name, from_address, from_name, postal_address)
		VALUES ($1, $2, 'news@acme.example', 'Acme News', E'1 Main Street\nSpringfield') RETURNING id`,
		b.ws, fmt.Sprintf("sender-%d", b.n)).Scan(&sender)
	if err != nil {
		t.Fatal(err)
	}
	err = b.pool.QueryRow(ctx, `INSERT INTO campaigns (workspace_id, name, purpose, template_name, template_version,
			sender_id, audience, rate_per_second, domain_rate, status, fanout_done, started_at)
		VALUES ($1, 'November', 'news', $2, $3, $4, '{}', $5, $6, $7, $8, now()) RETURNING id`,
		b.ws, tpl.Name, tpl.Version, sender, o.rate, o.domainRate, o.status, !o.fanoutNotDone).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// recipients adds the contacts as queued recipients of the campaign, in order, and returns the
// first and last recipient ids.
func (b *sendBundle) recipients(t testing.TB, campaign int64, contactIDs []int64) (first, last int64) {
	t.Helper()
	rows, err := b.pool.Query(context.Background(), `
		INSERT INTO campaign_recipients (campaign_id, contact_id, address)
		SELECT $1, c.id, lower(c.email) FROM unnest($2::bigint[]) WITH ORDINALITY AS u (id, i)
		JOIN contacts c ON c.id = u.id ORDER BY u.i
		RETURNING id`, campaign, contactIDs)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != len(contactIDs) {
		t.Fatalf("inserted %d recipients of %d", len(ids), len(contactIDs))
	}
	return ids[0], ids[len(ids)-1]
}

// work runs one batch job as River would, on attempt of maxAttempts.
func (b *sendBundle) work(ctx context.Context, campaign, first, last int64, attempt, maxAttempts int) error {
	job := &river.Job[campaigns.SendBatchArgs]{
		JobRow: &rivertype.JobRow{ID: 1, Attempt: attempt, MaxAttempts: maxAttempts, Kind: campaigns.SendBatchArgs{}.Kind()},
		Args:   campaigns.SendBatchArgs{CampaignID: campaign, FirstID: first, LastID: last},
	}
	return b.worker.Work(ctx, job)
}

type recipientRow struct {
	Address, Status, Reason, MessageID, Reply string
	Attempts                                  int
	Code                                      *int
	SentAt                                    *time.Time
}

func (b *sendBundle) rows(t testing.TB, campaign int64) map[string]recipientRow {
	t.Helper()
	rows, err := b.pool.Query(context.Background(), `SELECT address, status, reason, message_id, smtp_reply, attempts,
		smtp_code, sent_at FROM campaign_recipients WHERE campaign_id = $1`, campaign)
	if err != nil {
		t.Fatal(err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[recipientRow])
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]recipientRow, len(list))
	for _, r := range list {
		out[r.Address] = r
	}
	return out
}

func (b *sendBundle) campaignStatus(t testing.TB, campaign int64) string {
	t.Helper()
	var s string
	if err := b.pool.QueryRow(context.Background(), `SELECT status FROM campaigns WHERE id = $1`, campaign).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// received counts the messages the SMTP server accepted per envelope recipient.
func received(srv *smtpcapture.Server) map[string][]smtpcapture.Message {
	out := map[string][]smtpcapture.Message{}
	for _, m := range srv.Messages() {
		for _, to := range m.To {
			out[to] = append(out[to], m)
		}
	}
	return out
}

func TestSendBatchOutcomes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := sendSetup(t, sendOpts{})
	ids := []int64{
		b.contact(t, "ann@example.com", "Ann Lee", true),
		b.contact(t, "bob@example.com", "Bob\r\nBcc: victim@example.net", true), // CRLF in a name
		b.contact(t, "cat@example.com", `Cat <script>alert(1)</script>`, true),  // script in a name
		b.contact(t, "dan@example.com", "Dan", true),
		b.contact(t, "eve@example.com", "Eve", false),
		b.contact(t, "fay@example.com", "Fay", true),
		b.contact(t, "gus@example.com", "Gus", true),
	}
	b.consent(t, ids[3], consent.ActionWithdrawn)
	if _, err := b.svc.Suppress(ctx, b.pool, consent.Suppression{WorkspaceID: b.ws, Address: "fay@example.com",
		Reason: consent.ReasonComplaint}); err != nil {
		t.Fatal(err)
	}
	c := b.campaign(t, campaignOpts{})
	first, last := b.recipients(t, c, ids)
	if _, err := b.pool.Exec(ctx, `DELETE FROM contacts WHERE id = $1`, ids[6]); err != nil {
		t.Fatal(err)
	}

	if err := b.work(ctx, c, first, last, 1, 5); err != nil {
		t.Fatal(err)
	}
	rows := b.rows(t, c)
	want := map[string]string{
		"ann@example.com": "sent", "bob@example.com": "sent", "cat@example.com": "sent",
		"dan@example.com": "suppressed:withdrawn", "eve@example.com": "suppressed:no_consent",
		"fay@example.com": "suppressed:complaint", "gus@example.com": "suppressed:no_contact",
	}
	for addr, w := range want {
		r := rows[addr]
		got := r.Status
		if r.Reason != "" {
			got += ":" + r.Reason
		}
		if got != w {
			t.Errorf("%s: %s, want %s", addr, got, w)
		}
	}
	if s := b.campaignStatus(t, c); s != "sent" {
		t.Errorf("campaign %s after its last batch, want sent", s)
	}

	got := received(b.smtp)
	if len(got) != 3 {
		t.Fatalf("received mail for %d addresses, want 3: %v", len(got), got)
	}
	for i, addr := range []string{"ann@example.com", "bob@example.com", "cat@example.com"} {
		ms := got[addr]
		if len(ms) != 1 {
			t.Fatalf("%s received %d messages", addr, len(ms))
		}
		m, r := ms[0], rows[addr]
		if want := "<" + r.MessageID + ">"; m.MessageID != want || !strings.HasPrefix(r.MessageID, "c.") ||
			strings.Contains(r.MessageID, fmt.Sprint(c)+".") {
			t.Errorf("%s: Message-ID %q, row %q", addr, m.MessageID, r.MessageID)
		}
		if r.Code == nil || *r.Code != 250 || r.SentAt == nil {
			t.Errorf("%s: sent row without code or time: %+v", addr, r)
		}
		token := b.svc.Keys.Token(consent.Recipient{WorkspaceID: b.ws, ContactID: ids[i], PurposeID: b.purpose.ID})
		url := sendTestBase + "/u/" + token
		lu := m.Header.Get("List-Unsubscribe")
		if !strings.Contains(lu, "<"+url+">") || !strings.Contains(lu, "mailto:unsubscribe+"+token+"@herald.example") {
			t.Errorf("%s: List-Unsubscribe %q lacks the recipient's links", addr, lu)
		}
		if m.Header.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" {
			t.Errorf("%s: List-Unsubscribe-Post %q", addr, m.Header.Get("List-Unsubscribe-Post"))
		}
		if lid := m.Header.Get("List-Id"); !strings.Contains(lid, "<news.acme.herald.example>") {
			t.Errorf("%s: List-Id %q", addr, lid)
		}
		raw := string(m.Raw)
		if strings.Count(raw, url) < 2 || !strings.Contains(raw, "Springfield") || !strings.Contains(raw, "gold") {
			t.Errorf("%s: body lacks the unsubscribe link, the postal address or the contact's data:\n%s", addr, raw)
		}
		header, _, _ := strings.Cut(raw, "\r\n\r\n")
		_, htmlPart, _ := strings.Cut(raw, "Content-Type: text/html")
		if strings.Contains(htmlPart, "<script>") {
			t.Errorf("%s: a script from the contact's name reached the HTML part:\n%s", addr, htmlPart)
		}
		if len(m.Header["Bcc"]) != 0 || strings.Contains(header, "\r\nBcc:") {
			t.Errorf("%s: CRLF in the name added a header:\n%s", addr, header)
		}
	}

	// The job again (a retry, or a requeue of the range): every recipient is final, nothing is sent.
	if err := b.work(ctx, c, first, last, 2, 5); err != nil {
		t.Fatal(err)
	}
	if n := b.smtp.Count(); n != 3 {
		t.Errorf("a second run sent again: %d messages", n)
	}
}

func TestSendBatchPausedCancelled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := sendSetup(t, sendOpts{})
	ids := []int64{b.contact(t, "a@example.com", "A", true), b.contact(t, "b@example.com", "B", true)}
	for _, status := range []string{"paused", "scheduled"} {
		c := b.campaign(t, campaignOpts{status: status})
		first, last := b.recipients(t, c, ids)
		if err := b.work(ctx, c, first, last, 1, 5); err != nil {
			t.Fatal(err)
		}
		for addr, r := range b.rows(t, c) {
			if r.Status != "queued" || r.Attempts != 0 {
				t.Errorf("%s campaign: %s is %s after %d attempts; nothing may be claimed", status, addr, r.Status, r.Attempts)
			}
		}
	}
	c := b.campaign(t, campaignOpts{status: "cancelled"})
	first, last := b.recipients(t, c, ids)
	if err := b.work(ctx, c, first, last, 1, 5); err != nil {
		t.Fatal(err)
	}
	for addr, r := range b.rows(t, c) {
		if r.Status != "cancelled" {
			t.Errorf("cancelled campaign: %s is %s", addr, r.Status)
		}
	}
	if n := b.smtp.Count(); n != 0 {
		t.Errorf("%d messages sent for campaigns not sending", n)
	}
}

func TestSendBatchDeferredAndBounced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	hook := func(m *smtpcapture.Message) error {
		switch m.To[0] {
		case "later@example.com":
			return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "Try again later"}
		case "gone@example.com":
			return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
		case "policy@example.com":
			return &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}, Message: "Refused"}
		}
		return nil
	}
	b := sendSetup(t, sendOpts{dataHook: hook})
	ids := []int64{
		b.contact(t, "later@example.com", "L", true), b.contact(t, "gone@example.com", "G", true),
		b.contact(t, "policy@example.com", "P", true), b.contact(t, "ok@example.com", "O", true),
	}
	c := b.campaign(t, campaignOpts{})
	first, last := b.recipients(t, c, ids)
	if err := b.work(ctx, c, first, last, 1, 3); err == nil {
		t.Fatal("a batch with a deferred recipient returned nil: River would not retry it")
	}
	rows := b.rows(t, c)
	check := func(addr, status, reason string, code int) {
		t.Helper()
		r := rows[addr]
		if r.Status != status || r.Reason != reason || r.Code == nil || *r.Code != code {
			t.Errorf("%s: %s/%s code %v reply %q, want %s/%s %d", addr, r.Status, r.Reason, r.Code, r.Reply, status, reason, code)
		}
	}
	check("later@example.com", "deferred", "", 451)
	check("gone@example.com", "failed", "hard_bounce", 550)
	check("policy@example.com", "failed", "rejected", 554)
	check("ok@example.com", "sent", "", 250)
	sp, err := b.svc.SuppressionGet(ctx, b.pool, b.ws, "gone@example.com")
	if err != nil || sp.Reason != consent.ReasonHardBounce {
		t.Errorf("5.1.1 not on the suppression list: %+v, %v", sp, err)
	}
	if _, err := b.svc.SuppressionGet(ctx, b.pool, b.ws, "policy@example.com"); err == nil {
		t.Error("a 5.7.1 refusal put the address on the suppression list")
	}
	if s := b.campaignStatus(t, c); s != "sending" {
		t.Errorf("campaign %s with a deferred recipient", s)
	}

	// The retry claims only the deferred recipient; on the job's last attempt it fails.
	if err := b.work(ctx, c, first, last, 3, 3); err != nil {
		t.Fatalf("last attempt: %v", err)
	}
	rows = b.rows(t, c)
	if r := rows["later@example.com"]; r.Status != "failed" || r.Attempts != 2 || !strings.Contains(r.Reason, "gave up") {
		t.Errorf("after the last attempt: %+v", r)
	}
	if r := rows["ok@example.com"]; r.Attempts != 1 {
		t.Errorf("the retry claimed a sent recipient again: %+v", r)
	}
	if s := b.campaignStatus(t, c); s != "sent" {
		t.Errorf("campaign %s once every recipient is final", s)
	}
	if n := len(received(b.smtp)["ok@example.com"]); n != 1 {
		t.Errorf("ok@example.com received %d messages", n)
	}
}

// TestSendBatchOverlappingJobs runs four jobs at once over overlapping ranges of one campaign (as
// after a requeue): each recipient is claimed by one of them only.
func TestSendBatchOverlappingJobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := sendSetup(t, sendOpts{})
	var ids []int64
	for i := range 60 {
		ids = append(ids, b.contact(t, fmt.Sprintf("u%d@example.com", i), "U", true))
	}
	c := b.campaign(t, campaignOpts{})
	first, last := b.recipients(t, c, ids)
	ranges := [][2]int64{{first, last}, {first, last}, {first + 10, last}, {first, first + 40}}
	var wg sync.WaitGroup
	errs := make(chan error, len(ranges))
	for _, r := range ranges {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- b.work(ctx, c, r[0], r[1], 1, 5)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got := received(b.smtp)
	if len(got) != len(ids) {
		t.Errorf("%d addresses received mail, want %d", len(got), len(ids))
	}
	for addr, ms := range got {
		if len(ms) != 1 {
			t.Errorf("%s received %d messages", addr, len(ms))
		}
	}
	for addr, r := range b.rows(t, c) {
		if r.Status != "sent" || r.Attempts != 1 {
			t.Errorf("%s: %s after %d attempts", addr, r.Status, r.Attempts)
		}
	}
}

// TestSendBatchClaims: a recipient whose claim is live belongs to its job and is left alone; one
// whose claim expired (its job died) is taken again and sent with the same Message-ID.
func TestSendBatchClaims(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := sendSetup(t, sendOpts{})
	ids := []int64{b.contact(t, "live@example.com", "L", true), b.contact(t, "dead@example.com", "D", true),
		b.contact(t, "later@example.com", "T", true)}
	c := b.campaign(t, campaignOpts{fanoutNotDone: true})
	first, last := b.recipients(t, c, ids)
	_, err := b.pool.Exec(ctx, `UPDATE campaign_recipients SET status = 'sending', attempts = 1,
		claimed_until = CASE address WHEN 'live@example.com' THEN now() + interval '1 hour' ELSE now() - interval '1 second' END
		WHERE campaign_id = $1 AND address IN ('live@example.com', 'dead@example.com')`, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(ctx, `UPDATE campaign_recipients SET send_after = now() + interval '1 hour'
		WHERE campaign_id = $1 AND address = 'later@example.com'`, c); err != nil {
		t.Fatal(err)
	}
	if err := b.work(ctx, c, first, last, 1, 5); err != nil {
		t.Fatal(err)
	}
	rows := b.rows(t, c)
	if r := rows["live@example.com"]; r.Status != "sending" || r.Attempts != 1 {
		t.Errorf("a live claim was taken: %+v", r)
	}
	if r := rows["later@example.com"]; r.Status != "queued" {
		t.Errorf("a recipient not yet due was claimed: %+v", r)
	}
	r := rows["dead@example.com"]
	if r.Status != "sent" || r.Attempts != 2 || r.MessageID != campaigns.MessageID(b.svc.Keys, c, first+1, "mid.herald.example") {
		t.Errorf("an expired claim was not taken again: %+v", r)
	}
	if n := b.smtp.Count(); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
	if s := b.campaignStatus(t, c); s != "sending" {
		t.Errorf("campaign %s while its fan-out is not done", s)
	}
}

// TestSendBatchRefusesWithoutUnsubscribeLink: a template that escaped the marketing rule (stored
// directly) sends nothing: the rendered message must show the recipient's own link.
func TestSendBatchRefusesWithoutUnsubscribeLink(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := sendSetup(t, sendOpts{})
	ids := []int64{b.contact(t, "a@example.com", "A", true)}
	for _, o := range []campaignOpts{
		{html: `<p>No way out. {{postal_address}}</p>`, withoutTemplateCheck: true},
		{html: `<p><a href="https://elsewhere.example/u/x">Unsubscribe</a> {{postal_address}}</p>`, withoutTemplateCheck: true},
		{html: sendTestHTML, text: "Text without the link. {{postal_address}}", withoutTemplateCheck: true},
	} {
		c := b.campaign(t, o)
		first, last := b.recipients(t, c, ids)
		if err := b.work(ctx, c, first, last, 1, 5); err != nil {
			t.Fatal(err)
		}
		if r := b.rows(t, c)["a@example.com"]; r.Status != "failed" || !strings.HasPrefix(r.Reason, "no_unsubscribe_link") {
			t.Errorf("template %q: %+v", o.html, r)
		}
	}
	if n := b.smtp.Count(); n != 0 {
		t.Errorf("%d messages sent without the recipient's unsubscribe link", n)
	}
}

// TestSendBatchPauseMidBatch pauses the campaign while a batch is sending: the batch stops
// between two messages and gives its other recipients back, unclaimed, to the resumed campaign.
func TestSendBatchPauseMidBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var b *sendBundle
	var c int64
	var once sync.Once
	paused := make(chan error, 1)
	hook := func(m *smtpcapture.Message) error {
		if strings.HasPrefix(m.To[0], "u5@") {
			once.Do(func() {
				_, err := b.pool.Exec(ctx, `UPDATE campaigns SET status = 'paused' WHERE id = $1`, c)
				paused <- err
			})
		}
		return nil
	}
	b = sendSetup(t, sendOpts{dataHook: hook, stateTTL: time.Millisecond})
	var ids []int64
	for i := range 30 {
		ids = append(ids, b.contact(t, fmt.Sprintf("u%d@example.com", i), "U", true))
	}
	c = b.campaign(t, campaignOpts{})
	first, last := b.recipients(t, c, ids)
	if err := b.work(ctx, c, first, last, 1, 5); err != nil {
		t.Fatal(err)
	}
	if err := <-paused; err != nil {
		t.Fatal(err)
	}
	sent := b.smtp.Count()
	if sent < 6 || sent > 8 {
		t.Errorf("%d messages sent; the pause came with the 6th and the cache is 1 ms old", sent)
	}
	counts := map[string]int{}
	for _, r := range b.rows(t, c) {
		counts[r.Status]++
		if r.Status == "queued" && r.Attempts != 0 {
			t.Errorf("a released recipient kept its attempt: %+v", r)
		}
	}
	if counts["sent"] != int(sent) || counts["queued"] != len(ids)-int(sent) {
		t.Errorf("statuses %v after %d sent", counts, sent)
	}

	// Resumed: the same range sends the rest, and nobody twice.
	if _, err := b.pool.Exec(ctx, `UPDATE campaigns SET status = 'sending' WHERE id = $1`, c); err != nil {
		t.Fatal(err)
	}
	if err := b.work(ctx, c, first, last, 1, 5); err != nil {
		t.Fatal(err)
	}
	got := received(b.smtp)
	for _, id := range ids {
		_ = id
	}
	if len(got) != len(ids) {
		t.Errorf("%d addresses received mail, want %d", len(got), len(ids))
	}
	for addr, ms := range got {
		if len(ms) != 1 {
			t.Errorf("%s received %d messages", addr, len(ms))
		}
	}
}

// TestSendBatchThrottle: a campaign of 10 messages/s overall sends a batch of 6 in about half a
// second, and 2 messages/s per domain holds back the domain with 4 recipients.
func TestSendBatchThrottle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := sendSetup(t, sendOpts{})
	var ids []int64
	for i := range 6 {
		ids = append(ids, b.contact(t, fmt.Sprintf("u%d@d%d.example", i, i%3), "U", true))
	}
	c := b.campaign(t, campaignOpts{rate: 10})
	first, last := b.recipients(t, c, ids)
	start := time.Now()
	if err := b.work(ctx, c, first, last, 1, 5); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 450*time.Millisecond || d > 3*time.Second {
		t.Errorf("6 messages at 10/s took %s", d)
	}
	var ids2 []int64
	for i := range 4 {
		ids2 = append(ids2, b.contact(t, fmt.Sprintf("v%d@same.example", i), "V", true))
	}
	c2 := b.campaign(t, campaignOpts{domainRate: 4})
	first, last = b.recipients(t, c2, ids2)
	start = time.Now()
	if err := b.work(ctx, c2, first, last, 1, 5); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 700*time.Millisecond || d > 3*time.Second {
		t.Errorf("4 messages to one domain at 4/s took %s", d)
	}
}

// claimedRecipients makes n contacts, a campaign with them as recipients held by a claim
// (status sending, attempt 1), and returns the contacts and the first recipient's id (the others
// follow it).
func (b *sendBundle) claimedRecipients(t *testing.T, n int) ([]int64, int64) {
	t.Helper()
	var ids []int64
	for i := range n {
		ids = append(ids, b.contact(t, fmt.Sprintf("u%d@example.com", i), "U", false))
	}
	c := b.campaign(t, campaignOpts{})
	first, _ := b.recipients(t, c, ids)
	if _, err := b.pool.Exec(context.Background(), `UPDATE campaign_recipients SET status = 'sending', attempts = 1 WHERE campaign_id = $1`, c); err != nil {
		t.Fatal(err)
	}
	return ids, first
}

// TestOutcomeWriterGroups: outcomes written at once from many goroutines share statements, each
// caller returns once its row is committed, and an outcome of a claim that lost its row is not
// applied.
func TestOutcomeWriterGroups(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := sendSetup(t, sendOpts{})
	ids, first := b.claimedRecipients(t, 200)
	w := &campaigns.OutcomeWriter{DB: b.pool}
	defer w.Close()
	var wg sync.WaitGroup
	var mu sync.Mutex
	applied := 0
	for i := range len(ids) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			attempt := 1
			if i%50 == 0 {
				attempt = 7 // a stale claim
			}
			ok, err := w.Write(ctx, campaigns.Outcome{RecipientID: first + int64(i), Attempt: attempt, Status: "sent",
				MessageID: fmt.Sprintf("m%d@x", i), SMTPCode: 250, SMTPReply: "250 ok", SentAt: time.Now()})
			if err != nil {
				t.Error(err)
				return
			}
			var status string
			if err := b.pool.QueryRow(ctx, `SELECT status FROM campaign_recipients WHERE id = $1`, first+int64(i)).Scan(&status); err != nil {
				t.Error(err)
			}
			if ok != (status == "sent") || ok != (attempt == 1) {
				t.Errorf("recipient %d: applied %v, status %s, attempt %d", i, ok, status, attempt)
			}
			mu.Lock()
			if ok {
				applied++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	groups, written := w.Stats()
	t.Logf("%d outcomes in %d statements", written, groups)
	if applied != len(ids)-4 || written != int64(len(ids)) {
		t.Errorf("applied %d, written %d", applied, written)
	}
	if groups >= written/2 {
		t.Errorf("%d statements for %d concurrent outcomes: not grouped", groups, written)
	}
	w.Close()
	if _, err := w.Write(ctx, campaigns.Outcome{RecipientID: first}); !errors.Is(err, campaigns.ErrWriterClosed) {
		t.Errorf("write after close: %v", err)
	}
}

// TestOutcomeWriterLinger: after a busy statement (lingerAfter outcomes or more) the writer waits
// up to Linger for more before the next one, so outcomes submitted a little apart share it; after
// a quiet one it writes a lone outcome at once.
func TestOutcomeWriterLinger(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := sendSetup(t, sendOpts{})
	_, first := b.claimedRecipients(t, 9)
	outcome := func(i int) campaigns.Outcome {
		return campaigns.Outcome{RecipientID: first + int64(i), Attempt: 1, Status: "sent", MessageID: fmt.Sprintf("m%d@x", i),
			SMTPCode: 250, SMTPReply: "250 ok", SentAt: time.Now()}
	}
	w := &campaigns.OutcomeWriter{DB: b.pool, Linger: time.Second}
	defer w.Close()

	// Quiet: a lone outcome is written at once.
	start := time.Now()
	if ok, err := w.Write(ctx, outcome(0)); err != nil || !ok {
		t.Fatalf("write: %v %v", ok, err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("a lone outcome took %s: the writer lingered without load", d)
	}

	// Busy: a row lock holds the first statement while five more outcomes queue; they make the
	// second statement, a group of five.
	lock, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec(ctx, `SELECT 1 FROM campaign_recipients WHERE id = $1 FOR UPDATE`, first+1); err != nil {
		t.Fatal(err)
	}
	blocked, err := w.Submit(ctx, outcome(1))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var waiting bool
		if err := b.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
				AND wait_event_type = 'Lock' AND query LIKE '%UPDATE campaign_recipients r SET%')`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first statement never waited for the row lock")
		}
	}
	var queued []campaigns.PendingOutcome
	for i := 2; i < 7; i++ {
		p, err := w.Submit(ctx, outcome(i))
		if err != nil {
			t.Fatal(err)
		}
		queued = append(queued, p)
	}
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range append(queued, blocked) {
		if ok, err := p.Wait(ctx); err != nil || !ok {
			t.Fatalf("queued outcome: %v %v", ok, err)
		}
	}
	groups, written := w.Stats()
	if groups != 3 || written != 7 {
		t.Fatalf("before the lingering statement: %d statements for %d outcomes, want 3 for 7", groups, written)
	}

	// After the group of five, the next statement waits: an outcome submitted 100 ms after the
	// first joins it.
	p, err := w.Submit(ctx, outcome(7))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if ok, err := w.Write(ctx, outcome(8)); err != nil || !ok {
		t.Fatalf("second lingering outcome: %v %v", ok, err)
	}
	if ok, err := p.Wait(ctx); err != nil || !ok {
		t.Fatalf("lingering outcome: %v %v", ok, err)
	}
	if groups, written := w.Stats(); groups != 4 || written != 9 {
		t.Errorf("%d statements for %d outcomes, want 4 for 9: the writer did not linger after a busy statement", groups, written)
	}
}

// TestSendBatchLeaseCountsFromTheClaim: a batch's claims expire a lease after the claim statement
// starts, however long the statement then takes; the batch must count its lease from then too, or
// it hands off rows the database already lets another job take. Here a row lock holds the claim
// for most of a 2 s lease: the batch must renew before its first hand-off, so when that message
// arrives the rows still held have about a whole lease left, not the few hundred milliseconds the
// claim left them.
func TestSendBatchLeaseCountsFromTheClaim(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const lease, held = 2 * time.Second, 1300 * time.Millisecond
	left := make(chan time.Duration, 10)
	var b *sendBundle
	var campaign int64
	b = sendSetup(t, sendOpts{dataHook: func(*smtpcapture.Message) error {
		var ms float64
		if err := b.pool.QueryRow(ctx, `SELECT coalesce(extract(epoch FROM min(claimed_until) - clock_timestamp()) * 1000, 0)
				FROM campaign_recipients WHERE campaign_id = $1 AND status = 'sending'`, campaign).Scan(&ms); err != nil {
			t.Error(err)
		}
		select {
		case left <- time.Duration(ms) * time.Millisecond:
		default:
		}
		return nil
	}})
	b.worker.Lease = lease
	var ids []int64
	for i := range 3 {
		ids = append(ids, b.contact(t, fmt.Sprintf("l%d@example.com", i), "L", true))
	}
	campaign = b.campaign(t, campaignOpts{})
	first, last := b.recipients(t, campaign, ids)

	lock, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec(ctx, `SELECT 1 FROM campaign_recipients WHERE id = $1 FOR UPDATE`, first); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(held)
		lock.Rollback(ctx) //nolint:errcheck
	}()
	if err := b.work(ctx, campaign, first, last, 1, 5); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-left:
		if d < lease-held/2 {
			t.Errorf("at the first hand-off the held rows had %s of their lease left: the batch did not renew a claim the wait had aged", d)
		}
	default:
		t.Fatal("no message arrived")
	}
}
