package consent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"

	"herald/campaigns"
	"herald/consent"
	"herald/internal/contacts"
	"herald/internal/queue"
	"herald/internal/workspace"
	"herald/mailer"
	"herald/tracking"
)

// rightsBundle is privacySetup with the rights routes and pages, over every package's part.
type rightsBundle struct {
	*privacyBundle
	rights *consent.Rights
}

func rightsSetup(t *testing.T) *rightsBundle {
	t.Helper()
	pb := privacySetup(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	rc, err := queue.New(pb.pool, queue.Options{Logger: logger}) // insert-only
	if err != nil {
		t.Fatal(err)
	}
	rights := consent.NewRights(pb.svc, &mailer.RightsMailer{River: rc, MaxAttempts: 3, MessageIDDomain: "herald.test"},
		mailer.RightsPart{}, campaigns.RightsPart{}, tracking.RightsPart{})
	h := &consent.Handler{DB: pb.pool, Service: pb.svc, Logger: logger, MaxBodyBytes: apiMaxBody,
		BaseURL: "https://herald.test", Rights: rights}
	r := chi.NewRouter()
	r.Route("/v1", func(r chi.Router) {
		r.Use(workspace.Auth(pb.pool, logger))
		(&contacts.Handler{DB: pb.pool, Logger: logger}).Routes(r)
		h.Routes(r)
		h.PrivacyRoutes(r)
		h.RightsRoutes(r)
	})
	h.PageRoutes(r)
	h.RightsPageRoutes(r)
	pb.srv.Close()
	pb.srv = httptest.NewServer(r)
	t.Cleanup(pb.srv.Close)
	return &rightsBundle{privacyBundle: pb, rights: rights}
}

// person is what seed wrote about one contact.
type person struct {
	ID                    int64
	Ext, Email, Name, IP  string
	UA                    string
	CampaignID, Recipient int64
	Messages              []string // subjects
}

func (b *rightsBundle) exec(t *testing.T, sql string, args ...any) int64 {
	t.Helper()
	var id int64
	if strings.Contains(sql, "RETURNING") {
		if err := b.pool.QueryRow(context.Background(), sql, args...).Scan(&id); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return id
	}
	if _, err := b.pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return 0
}

// seed writes the person into every table that can hold personal data.
func (b *rightsBundle) seed(t *testing.T, ws int64, key, ext, email, name, ip string) person {
	t.Helper()
	ctx := context.Background()
	p := person{Ext: ext, Email: email, Name: name, IP: ip, UA: "Mozilla/5.0 (" + name + " browser)"}
	p.ID = b.putContact(t, key, ext, email, name)
	b.exec(t, `UPDATE contacts SET locale = 'fr-FR', timezone = 'Europe/Paris', attributes = '{"plan":"gold","city":"Lyon"}' WHERE id = $1`, p.ID)
	list := b.exec(t, `INSERT INTO lists (workspace_id, name) VALUES ($1, 'vip') ON CONFLICT (workspace_id, name) DO UPDATE SET description = '' RETURNING id`, ws)
	b.exec(t, `INSERT INTO list_members (workspace_id, list_id, contact_id) VALUES ($1, $2, $3)`, ws, list, p.ID)
	news := b.purpose(t, ws, "news")
	b.record(t, consent.Event{WorkspaceID: ws, ContactID: p.ID, Purpose: news.Name, Action: consent.ActionGranted,
		NoticeVersion: news.NoticeVersion, Evidence: &consent.Evidence{IP: ip, UserAgent: p.UA, Address: email}})
	b.exec(t, `INSERT INTO subscribe_requests (id, workspace_id, token_hash, address, name, purposes, notice_versions, ip, user_agent, expires_at)
		VALUES (gen_random_uuid(), $1, sha256(convert_to(gen_random_uuid()::text, 'UTF8')), $2, $3, '{news}', '{1}', $4, $5, now() + interval '1 day')`,
		ws, email, name, ip, p.UA)
	// A sent transactional message to the contact (with an attachment), a queued one to the bare address.
	msg := b.exec(t, `INSERT INTO messages (id, workspace_id, stream, contact_id, to_address, to_name, from_address, subject,
			html_body, text_body, headers, message_id, status, history, idempotency_key, request_hash, sent_at)
		VALUES (gen_random_uuid(), $1, 'transactional', $2, $3, $4, 'shop@acme.test', 'Your order, ' || $4,
			'<p>Hello ' || $4 || '</p>', 'Hello ' || $4, jsonb_build_object('X-Customer', $4), gen_random_uuid()::text || '@herald.test',
			'sent', jsonb_build_array(jsonb_build_object('status', 'sent', 'detail', '250 2.0.0 <' || $3 || '> accepted', 'at', now())),
			'order-' || $3, sha256(convert_to($3, 'UTF8')), now())
		RETURNING seq`, ws, p.ID, email, name)
	b.exec(t, `INSERT INTO message_attachments (message_id, position, filename, content_type, content)
		SELECT id, 0, 'invoice.json', 'application/json', convert_to('{"to":"' || $2 || '"}', 'UTF8') FROM messages WHERE seq = $1`, msg, email)
	b.exec(t, `INSERT INTO messages (id, workspace_id, stream, to_address, to_name, from_address, subject, text_body, message_id, status_reason)
		VALUES (gen_random_uuid(), $1, 'transactional', $2, $3, 'shop@acme.test', 'Reset your password', 'Hi ' || $3,
			gen_random_uuid()::text || '@herald.test', 'relay said 450 <' || $2 || '> busy')`, ws, email, name)
	p.Messages = []string{"Your order, " + name, "Reset your password"}
	// A campaign send with an open and a click, and a bounce report.
	sender := b.exec(t, `INSERT INTO senders (workspace_id, name, from_address, postal_address) VALUES ($1, 'main', 'news@acme.test', '1 Main St')
		ON CONFLICT (workspace_id, name) DO UPDATE SET from_name = '' RETURNING id`, ws)
	b.exec(t, `INSERT INTO templates (workspace_id, name, version, subject, text) VALUES ($1, 'nl', 1, 'Our November news', 'x')
		ON CONFLICT DO NOTHING`, ws)
	p.CampaignID = b.exec(t, `INSERT INTO campaigns (workspace_id, name, purpose, template_name, template_version, sender_id, audience, status)
		VALUES ($1, 'November news', 'news', 'nl', 1, $2, '{}', 'sent') RETURNING id`, ws, sender)
	p.Recipient = b.exec(t, `INSERT INTO campaign_recipients (campaign_id, contact_id, address, status, smtp_reply, sent_at, message_id)
		VALUES ($1, $2, $3, 'sent', '250 2.0.0 <' || $3 || '> queued', now(), 'c1@herald.test') RETURNING id`, p.CampaignID, p.ID, email)
	link := b.exec(t, `INSERT INTO campaign_links (campaign_id, url) VALUES ($1, 'https://acme.test/offer') RETURNING id`, p.CampaignID)
	b.exec(t, `INSERT INTO tracking_events (workspace_id, campaign_id, recipient_id, kind, link_id, at, ip, user_agent) VALUES
		($1, $2, $3, 'open', NULL, now(), $4, $5), ($1, $2, $3, 'click', $6, now(), $4, $5)`, ws, p.CampaignID, p.Recipient, ip, p.UA, link)
	b.exec(t, `INSERT INTO feedback_events (workspace_id, kind, source, address_hash, campaign_id, recipient_id, status, detail, at)
		VALUES ($1, 'soft_bounce', 'dsn', $2, $3, $4, '4.2.2', 'mailbox full: <' || $5 || '>', now())`,
		ws, b.svc.Keys.AddressHash(ws, email), p.CampaignID, p.Recipient, email)
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		if _, err := b.svc.Suppress(ctx, tx, consent.Suppression{WorkspaceID: ws, Address: email, Reason: consent.ReasonUnsubscribedAll,
			Detail: "asked by phone: " + name}); err != nil {
			return err
		}
		_, err := b.svc.RecordPrivacyRequest(ctx, tx, consent.PrivacyRequest{WorkspaceID: ws, ContactID: &p.ID,
			Kind: consent.RequestAccess, Channel: consent.RequestChannelEmail, Note: "Letter from " + name + ", " + email}, "staff")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// traces lists "table.column" for every text, varchar, jsonb, array and bytea column of every
// table in the public schema that contains one of needles (case-insensitively; bytea: the bytes).
func (b *rightsBundle) traces(t *testing.T, needles ...string) []string {
	t.Helper()
	ctx := context.Background()
	rows, err := b.pool.Query(ctx, `SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c
		JOIN information_schema.tables tb ON tb.table_schema = c.table_schema AND tb.table_name = c.table_name AND tb.table_type = 'BASE TABLE'
		WHERE c.table_schema = 'public' AND c.data_type IN ('text', 'character varying', 'jsonb', 'json', 'bytea', 'ARRAY')
		ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	type col struct{ table, column, typ string }
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (col, error) {
		var c col
		return c, r.Scan(&c.table, &c.column, &c.typ)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(cols) < 40 {
		t.Fatalf("only %d columns to search: the query is wrong", len(cols))
	}
	var hits []string
	for _, c := range cols {
		ident := pgx.Identifier{c.table}.Sanitize() + "." + pgx.Identifier{c.column}.Sanitize()
		cond := ident + `::text ILIKE '%' || $1 || '%'`
		if c.typ == "bytea" {
			cond = `position(convert_to($1, 'UTF8') IN ` + ident + `) > 0`
		}
		for _, n := range needles {
			var found bool
			q := `SELECT EXISTS (SELECT 1 FROM ` + pgx.Identifier{c.table}.Sanitize() + ` WHERE ` + cond + `)`
			if err := b.pool.QueryRow(ctx, q, n).Scan(&found); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			if found {
				hits = append(hits, c.table+"."+c.column+" holds "+n)
			}
		}
	}
	return hits
}

func (b *rightsBundle) export(t *testing.T, key, ext string) (int, map[string]any, string) {
	t.Helper()
	res := b.call(t, http.MethodGet, "/v1/contacts/"+url.PathEscape(ext)+"/export", key, nil)
	if res.Status != http.StatusOK {
		return res.Status, nil, string(res.Raw)
	}
	var doc map[string]any
	if err := json.Unmarshal(res.Raw, &doc); err != nil {
		t.Fatalf("export is not JSON: %v\n%s", err, res.Raw)
	}
	return res.Status, doc, string(res.Raw)
}

// path walks doc along keys (strings for objects, ints for arrays).
func path(t *testing.T, doc any, keys ...any) any {
	t.Helper()
	v := doc
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("at %v: not an object: %v", k, v)
			}
			v = m[k]
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				t.Fatalf("at [%d]: not an array that long: %v", k, v)
			}
			v = a[k]
		}
	}
	return v
}

func TestExportContents(t *testing.T) {
	t.Parallel()
	b := rightsSetup(t)
	p := b.seed(t, b.wsA, "contacts", "crm-7", "zephyrine.q@example.com", "Zephyrine Quillfeather", "203.0.113.77")
	status, doc, raw := b.export(t, "privacy", p.Ext)
	if status != http.StatusOK {
		t.Fatalf("export: %d %s", status, raw)
	}
	for _, c := range []struct {
		keys []any
		want any
	}{
		{[]any{"schema"}, consent.ExportSchema},
		{[]any{"workspace"}, "acme"},
		{[]any{"contact", "external_id"}, p.Ext},
		{[]any{"contact", "email"}, p.Email},
		{[]any{"contact", "name"}, p.Name},
		{[]any{"contact", "locale"}, "fr-FR"},
		{[]any{"contact", "timezone"}, "Europe/Paris"},
		{[]any{"contact", "attributes", "city"}, "Lyon"},
		{[]any{"campaigns", "lists", 0, "name"}, "vip"},
		{[]any{"consent", "state", 0, "purpose"}, "news"},
		{[]any{"consent", "state", 0, "status"}, "granted"},
		{[]any{"consent", "history", 0, "action"}, "granted"},
		{[]any{"consent", "history", 0, "evidence", "ip"}, p.IP},
		{[]any{"consent", "history", 0, "evidence", "user_agent"}, p.UA},
		{[]any{"consent", "history", 0, "evidence", "address"}, p.Email},
		{[]any{"consent", "subscribe_requests", 0, "ip"}, p.IP},
		{[]any{"consent", "subscribe_requests", 0, "name"}, p.Name},
		{[]any{"consent", "suppression", "reason"}, "unsubscribed_all"},
		{[]any{"consent", "privacy_requests", 0, "note"}, "Letter from " + p.Name + ", " + p.Email},
		{[]any{"messages", 0, "subject"}, p.Messages[0]},
		{[]any{"messages", 0, "status"}, "sent"},
		{[]any{"messages", 0, "stream"}, "transactional"},
		{[]any{"messages", 0, "attachments", 0}, "invoice.json"},
		{[]any{"messages", 1, "subject"}, p.Messages[1]},
		{[]any{"messages", 1, "to"}, p.Email},
		{[]any{"messages", 1, "status"}, "queued"},
		{[]any{"campaigns", "messages", 0, "campaign"}, "November news"},
		{[]any{"campaigns", "messages", 0, "subject"}, "Our November news"},
		{[]any{"campaigns", "messages", 0, "status"}, "sent"},
		{[]any{"tracking", "events", 0, "ip"}, p.IP},
		{[]any{"tracking", "events", 0, "user_agent"}, p.UA},
		{[]any{"tracking", "feedback", 0, "kind"}, "soft_bounce"},
		{[]any{"tracking", "feedback", 0, "detail"}, "mailbox full: <" + p.Email + ">"},
	} {
		if got := path(t, doc, c.keys...); got != c.want {
			t.Errorf("%v = %v, want %v", c.keys, got, c.want)
		}
	}
	if n := len(path(t, doc, "tracking", "events").([]any)); n != 2 {
		t.Errorf("%d tracking events, want 2", n)
	}
	// The history's hashes are the ledger's.
	var hash []byte
	if err := b.pool.QueryRow(context.Background(), `SELECT hash FROM consent_events WHERE contact_id = $1`, p.ID).Scan(&hash); err != nil {
		t.Fatal(err)
	}
	if got := path(t, doc, "consent", "history", 0, "hash"); got != fmt.Sprintf("%x", hash) {
		t.Errorf("history hash %v, want %x", got, hash)
	}
	// The export is recorded (completed, api) and audited, without personal data.
	if n := b.count(t, `SELECT count(*) FROM privacy_requests WHERE kind = 'export' AND status = 'completed' AND channel = 'api' AND contact_id = $1`, p.ID); n != 1 {
		t.Errorf("%d export requests recorded", n)
	}
	if n := b.count(t, `SELECT count(*) FROM audit_log WHERE action = 'contact.export' AND target = $1
		AND detail::text NOT ILIKE '%zephyrine%'`, "contact:"+strconv.FormatInt(p.ID, 10)); n != 1 {
		t.Errorf("%d export audit entries", n)
	}
	// admin may export too; contacts:write may not; another workspace sees no such contact.
	if s, _, raw := b.export(t, "admin", p.Ext); s != http.StatusOK {
		t.Errorf("admin export: %d %s", s, raw)
	}
	b.call(t, http.MethodGet, "/v1/contacts/crm-7/export", "contacts", nil).RequireProblem(t, http.StatusForbidden, "")
	b.call(t, http.MethodGet, "/v1/contacts/crm-7/export", "adminB", nil).RequireProblem(t, http.StatusNotFound, "")
	b.call(t, http.MethodPost, "/v1/contacts/crm-7/erase", "adminB", nil).RequireProblem(t, http.StatusNotFound, "")
	if b.count(t, `SELECT count(*) FROM contacts WHERE email = $1`, p.Email) != 1 {
		t.Fatal("another workspace's erase changed the contact")
	}
}

func TestEraseLeavesNoTrace(t *testing.T) {
	t.Parallel()
	b := rightsSetup(t)
	ctx := context.Background()
	p := b.seed(t, b.wsA, "contacts", "crm-9", "zephyrine.q@example.com", "Zephyrine Quillfeather", "203.0.113.77")
	if hits := b.traces(t, p.Email, p.Name, p.IP); len(hits) < 10 {
		t.Fatalf("the seed left too few traces to prove anything: %v", hits)
	}
	res := b.call(t, http.MethodPost, "/v1/contacts/crm-9/erase", "privacy", nil)
	if res.Status != http.StatusCreated {
		t.Fatalf("erase: %d %s", res.Status, res.Raw)
	}
	req := res.Body["privacy_request"].(map[string]any)
	if req["kind"] != "erase" || req["status"] != "completed" {
		t.Fatalf("erase request: %s", res.Raw)
	}
	if hits := b.traces(t, p.Email, p.Name, p.IP, p.Ext); len(hits) > 0 {
		t.Fatalf("erasure left traces:\n%s", strings.Join(hits, "\n"))
	}
	if n, err := consent.Verify(ctx, b.pool, b.wsA); err != nil || n < 2 {
		t.Fatalf("ledger after erasure: %d events, %v", n, err)
	}
	sp, err := b.svc.SuppressionGet(ctx, b.pool, b.wsA, p.Email)
	if err != nil || sp.Reason != consent.ReasonErased || sp.Address != "" || sp.Detail != "" {
		t.Fatalf("suppression after erasure: %+v %v", sp, err)
	}
	// Pseudonymous rows stay: counts and statuses unchanged; the queued message is stopped.
	for q, want := range map[string]int{
		`SELECT count(*) FROM messages`: 2,
		`SELECT count(*) FROM messages WHERE status = 'suppressed' AND status_reason = 'erased'`:  1,
		`SELECT count(*) FROM messages WHERE status = 'sent' AND jsonb_array_length(history) = 1`: 1,
		`SELECT count(*) FROM campaign_recipients WHERE status = 'sent' AND sent_at IS NOT NULL`:  1,
		`SELECT count(*) FROM tracking_events`:                                                    2,
		`SELECT count(*) FROM feedback_events`:                                                    1,
		`SELECT count(*) FROM message_attachments`:                                                0,
		`SELECT count(*) FROM list_members`:                                                       0,
		`SELECT count(*) FROM consent_evidence`:                                                   0,
		`SELECT count(*) FROM consent_state WHERE status = 'withdrawn'`:                           1,
		`SELECT count(*) FROM contacts WHERE email = '' AND external_id LIKE 'erased:%'`:          1,
		`SELECT count(*) FROM audit_log WHERE action = 'contact.erase' AND detail ? 'removed'`:    1,
		`SELECT count(*) FROM privacy_requests WHERE kind = 'erase' AND contact_id IS NOT NULL`:   1,
	} {
		if n := b.count(t, q); n != want {
			t.Errorf("%s = %d, want %d", q, n, want)
		}
	}
	// Idempotent: again (by the CRM's old id), the same request and nothing written.
	audits, reqs := b.count(t, `SELECT count(*) FROM audit_log`), b.count(t, `SELECT count(*) FROM privacy_requests`)
	again := b.call(t, http.MethodPost, "/v1/contacts/crm-9/erase", "admin", nil)
	if again.Status != http.StatusOK || path(t, again.Body, "privacy_request", "id") != req["id"] {
		t.Fatalf("second erase: %d %s", again.Status, again.Raw)
	}
	if b.count(t, `SELECT count(*) FROM audit_log`) != audits || b.count(t, `SELECT count(*) FROM privacy_requests`) != reqs {
		t.Fatal("a repeated erase wrote something")
	}
	b.call(t, http.MethodGet, "/v1/contacts/crm-9/export", "privacy", nil).RequireProblem(t, http.StatusGone, "")

	// The address comes back in an import: neither transactional nor marketing mail reaches it.
	c, _, err := contacts.Upsert(ctx, b.pool, b.wsA, contacts.Input{ExternalID: "crm-9", Email: p.Email, Name: p.Name})
	if err != nil {
		t.Fatal(err)
	}
	b.record(t, consent.Event{WorkspaceID: b.wsA, ContactID: c.ID, Purpose: "news", Action: consent.ActionGranted, NoticeVersion: 1})
	for _, stream := range []string{"transactional", "marketing"} {
		err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
			r := consent.Request{WorkspaceID: b.wsA, ContactID: &c.ID, Address: p.Email, Stream: stream}
			if stream == "marketing" {
				r.Purpose = "news"
			}
			d, err := b.svc.Decide(ctx, tx, r)
			if err == nil && (d.Allowed || d.Reason != consent.ReasonErased) {
				t.Errorf("%s send to the re-imported address: %+v", stream, d)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestRightsHostileInput(t *testing.T) {
	t.Parallel()
	b := rightsSetup(t)
	b.putContact(t, "contacts", "crm-1", "ada@example.com", "Ada")
	for _, c := range []struct {
		name, method, path, key string
		body                    any
		status                  int
	}{
		{"unknown contact", http.MethodGet, "/v1/contacts/nobody/export", "privacy", nil, http.StatusNotFound},
		{"unknown contact erase", http.MethodPost, "/v1/contacts/nobody/erase", "privacy", nil, http.StatusNotFound},
		{"erased id guessed", http.MethodGet, "/v1/contacts/erased:00000000000000000000000000000000/export", "privacy", nil, http.StatusNotFound},
		{"CRLF in id", http.MethodGet, "/v1/contacts/a%0D%0Ab/export", "privacy", nil, 0},
		{"overlong id", http.MethodPost, "/v1/contacts/" + strings.Repeat("x", 300) + "/erase", "privacy", nil, 0},
		{"no scope", http.MethodPost, "/v1/contacts/crm-1/erase", "send", nil, http.StatusForbidden},
		{"bad JSON", http.MethodPost, "/v1/contacts/crm-1/erase", "privacy", "{", http.StatusBadRequest},
		{"bad channel", http.MethodPost, "/v1/contacts/crm-1/erase", "privacy", `{"channel":"fax"}`, http.StatusUnprocessableEntity},
		{"unknown field", http.MethodPost, "/v1/contacts/crm-1/erase", "privacy", `{"note":"<script>alert(1)</script>"}`, http.StatusUnprocessableEntity},
		{"oversized", http.MethodPost, "/v1/contacts/crm-1/erase", "privacy", `{"channel":"` + strings.Repeat("a", apiMaxBody) + `"}`, http.StatusRequestEntityTooLarge},
	} {
		res := b.call(t, c.method, c.path, c.key, c.body)
		if c.status == 0 {
			if res.Status < 400 || res.Status >= 500 {
				t.Errorf("%s: %d %s", c.name, res.Status, res.Raw)
			}
			continue
		}
		res.RequireProblem(t, c.status, "")
	}
	if b.count(t, `SELECT count(*) FROM contacts WHERE email = 'ada@example.com'`) != 1 {
		t.Fatal("a refused request erased the contact")
	}
}

var exportLinkRE = regexp.MustCompile(`https://herald\.test/privacy/export/([a-z2-7]+)`)

// page posts or gets a recipient page and returns its status and body.
func (b *rightsBundle) page(t *testing.T, method, path string, form url.Values) (int, string) {
	t.Helper()
	var res *http.Response
	var err error
	if method == http.MethodPost {
		res, err = http.PostForm(b.srv.URL+path, form)
	} else {
		res, err = http.Get(b.srv.URL + path)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

func TestPreferenceCentreExport(t *testing.T) {
	t.Parallel()
	b := rightsSetup(t)
	ctx := context.Background()
	id := b.putContact(t, "contacts", "crm-1", "ada@example.com", "Ada")
	other := b.putContact(t, "contacts", "crm-2", "bob@example.com", "Bob")
	b.exec(t, `INSERT INTO consent_settings (workspace_id, confirm_from) VALUES ($1, 'privacy@acme.test')`, b.wsA)
	unsub := "/u/" + b.svc.Keys.Token(consent.Recipient{WorkspaceID: b.wsA, ContactID: id})

	if s, body := b.page(t, http.MethodGet, unsub, nil); s != http.StatusOK || !strings.Contains(body, `value="export"`) {
		t.Fatalf("preference centre has no export button: %d\n%s", s, body)
	}
	for range 2 { // the second press within a day sends nothing more
		if s, body := b.page(t, http.MethodPost, unsub, url.Values{"action": {"export"}}); s != http.StatusOK || !strings.Contains(body, "Check your inbox") {
			t.Fatalf("export request: %d %s", s, body)
		}
	}
	var text string
	if err := b.pool.QueryRow(ctx, `SELECT text_body FROM messages WHERE idempotency_key LIKE 'export-confirm:%' AND contact_id = $1
		AND to_address = 'ada@example.com'`, id).Scan(&text); err != nil {
		t.Fatalf("confirmation email: %v (%d messages)", err, b.count(t, `SELECT count(*) FROM messages`))
	}
	if b.count(t, `SELECT count(*) FROM messages`) != 1 || b.count(t, `SELECT count(*) FROM privacy_requests
		WHERE kind = 'export' AND status = 'received' AND channel = 'preference_centre'`) != 1 {
		t.Fatal("the export request was not recorded once with one confirmation email")
	}
	token := exportLinkRE.FindStringSubmatch(text)[1]
	link := "/privacy/export/" + token
	if s, body := b.page(t, http.MethodGet, link, nil); s != http.StatusOK || !strings.Contains(body, "<button") {
		t.Fatalf("confirmation page: %d %s", s, body)
	}
	if b.count(t, `SELECT count(*) FROM messages`) != 1 {
		t.Fatal("GET of the confirmation link sent something")
	}
	if s, body := b.page(t, http.MethodPost, link, url.Values{}); s != http.StatusOK || !strings.Contains(body, "on its way") {
		t.Fatalf("confirm: %d %s", s, body)
	}
	var content []byte
	var filename string
	if err := b.pool.QueryRow(ctx, `SELECT a.filename, a.content FROM message_attachments a JOIN messages m ON m.id = a.message_id
		WHERE m.idempotency_key LIKE 'export:%' AND m.to_address = 'ada@example.com' AND m.stream = 'transactional'`).Scan(&filename, &content); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(content, &doc); err != nil || doc["schema"] != consent.ExportSchema ||
		path(t, doc, "contact", "email") != "ada@example.com" || !strings.HasSuffix(filename, ".json") {
		t.Fatalf("attachment %s: %v %.200s", filename, err, content)
	}
	if b.count(t, `SELECT count(*) FROM river_job WHERE kind = 'mailer.send' AND args->>'attachments' = 'true'`) != 1 ||
		b.count(t, `SELECT count(*) FROM privacy_requests WHERE kind = 'export' AND status = 'completed' AND handled_by = 'recipient'`) != 1 ||
		b.count(t, `SELECT count(*) FROM audit_log WHERE action = 'contact.export' AND actor = 'recipient'`) != 1 {
		t.Fatal("the export was not queued with its attachment, completed and audited")
	}
	if s, body := b.page(t, http.MethodPost, link, url.Values{}); s != http.StatusOK || !strings.Contains(body, "Already sent") ||
		b.count(t, `SELECT count(*) FROM messages`) != 2 {
		t.Fatalf("second confirmation: %d %s", s, body)
	}

	// Hostile links: forged, truncated, another contact's or workspace's ids, expired.
	var reqID int64
	if err := b.pool.QueryRow(ctx, `SELECT id FROM privacy_requests WHERE kind = 'export'`).Scan(&reqID); err != nil {
		t.Fatal(err)
	}
	exp := b.nowTime().Add(time.Hour).Unix()
	flip := []byte(token)
	flip[len(flip)/2] ^= 1
	for name, tok := range map[string]string{
		"forged":        string(flip),
		"truncated":     token[:len(token)-3],
		"other contact": b.svc.Keys.SignIDs("herald/export-confirm/v1", b.wsA, other, reqID, exp),
		"other ws":      b.svc.Keys.SignIDs("herald/export-confirm/v1", b.wsB, id, reqID, exp),
		"unsubscribe":   b.svc.Keys.Token(consent.Recipient{WorkspaceID: b.wsA, ContactID: id}),
		"script":        "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
	} {
		for _, m := range []string{http.MethodGet, http.MethodPost} {
			if s, body := b.page(t, m, "/privacy/export/"+tok, url.Values{}); s != http.StatusBadRequest || strings.Contains(body, "<script>") {
				t.Errorf("%s link %s: %d", name, m, s)
			}
		}
	}
	b.setNow(b.nowTime().Add(25 * time.Hour)) // past the cooldown: a new request, then past its link's life
	if s, _ := b.page(t, http.MethodPost, unsub, url.Values{"action": {"export"}}); s != http.StatusOK {
		t.Fatalf("second request: %d", s)
	}
	if err := b.pool.QueryRow(ctx, `SELECT text_body FROM messages WHERE idempotency_key LIKE 'export-confirm:%' ORDER BY created_at DESC, seq DESC LIMIT 1`).Scan(&text); err != nil {
		t.Fatal(err)
	}
	link2 := "/privacy/export/" + exportLinkRE.FindStringSubmatch(text)[1]
	b.setNow(b.nowTime().Add(73 * time.Hour))
	msgs := b.count(t, `SELECT count(*) FROM messages`)
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		if s, body := b.page(t, m, link2, url.Values{}); s != http.StatusGone || !strings.Contains(body, "expired") {
			t.Errorf("expired link %s: %d %s", m, s, body)
		}
	}
	if b.count(t, `SELECT count(*) FROM messages`) != msgs {
		t.Fatal("an expired link sent the export")
	}
}
