package consent_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"herald/consent"
)

func TestObject(t *testing.T) {
	t.Parallel()
	b := privacySetup(t)
	ctx := context.Background()
	news, offers, events := b.purpose(t, b.wsA, "newsletter"), b.purpose(t, b.wsA, "offers"), b.purpose(t, b.wsA, "events")
	id := b.putContact(t, "contacts", "crm-1", "ada@example.com", "Ada")
	for _, p := range []consent.Purpose{news, offers, events} {
		b.record(t, consent.Event{WorkspaceID: b.wsA, ContactID: id, Purpose: p.Name, Action: consent.ActionGranted, NoticeVersion: p.NoticeVersion})
	}
	b.record(t, consent.Event{WorkspaceID: b.wsA, ContactID: id, Purpose: events.Name, Action: consent.ActionWithdrawn})
	before := b.count(t, `SELECT count(*) FROM consent_events`)

	res := b.call(t, http.MethodPost, "/v1/contacts/crm-1/object", "contacts", nil)
	if res.Status != http.StatusCreated {
		t.Fatalf("object: %d %s", res.Status, res.Raw)
	}
	req := res.Body["privacy_request"].(map[string]any)
	actor := "api_key:" + strconv.FormatInt(b.keyID["contacts"], 10)
	if res.Body["withdrawn"] != float64(2) || req["kind"] != "object" || req["status"] != "completed" || req["contact"] != "crm-1" ||
		req["channel"] != "api" || req["handled_by"] != actor || req["completed_at"] == nil {
		t.Fatalf("objection = %s", res.Raw)
	}
	reqID := int64(req["id"].(float64))
	// Two withdrawals (the granted purposes), source objection, by the API key.
	if n := b.count(t, `SELECT count(*) FROM consent_events WHERE action = 'withdrawn' AND source = 'objection' AND actor = $1`, actor); n != 2 {
		t.Fatalf("%d objection withdrawals", n)
	}
	states, err := b.svc.States(ctx, b.pool, b.wsA, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range states {
		if st.Status != consent.ActionWithdrawn || st.Live {
			t.Errorf("state after objection: %+v", st)
		}
	}
	sp, err := b.svc.SuppressionGet(ctx, b.pool, b.wsA, "ada@example.com")
	if err != nil || sp.Reason != consent.ReasonUnsubscribedAll {
		t.Fatalf("suppression: %+v %v", sp, err)
	}
	err = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		d, err := b.svc.Decide(ctx, tx, consent.Request{WorkspaceID: b.wsA, ContactID: &id, Address: "ada@example.com",
			Stream: "marketing", Purpose: news.Name})
		if err != nil || d.Allowed {
			t.Errorf("marketing after the objection: %+v %v", d, err)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := consent.Verify(ctx, b.pool, b.wsA); err != nil {
		t.Fatalf("ledger does not verify after %d events: %v", n, err)
	}

	// Idempotent: again, nothing is withdrawn or recorded, and the answer names the same request.
	events2 := b.count(t, `SELECT count(*) FROM consent_events`)
	audits := b.count(t, `SELECT count(*) FROM audit_log`)
	again := b.call(t, http.MethodPost, "/v1/contacts/crm-1/object", "contacts", `{"channel":"email"}`)
	if again.Status != http.StatusOK || int64(again.Body["privacy_request"].(map[string]any)["id"].(float64)) != reqID ||
		again.Body["withdrawn"] != float64(0) {
		t.Fatalf("second objection: %d %s", again.Status, again.Raw)
	}
	if events2 != before+2 || b.count(t, `SELECT count(*) FROM consent_events`) != events2 ||
		b.count(t, `SELECT count(*) FROM audit_log`) != audits || b.count(t, `SELECT count(*) FROM privacy_requests`) != 1 {
		t.Fatal("a repeated objection wrote something")
	}
	// Audited: the request and the objection itself.
	if n := b.count(t, `SELECT count(*) FROM audit_log WHERE action = 'contact.object' AND target = $1 AND actor = $2`,
		"contact:"+strconv.FormatInt(id, 10), actor); n != 1 {
		t.Fatalf("%d contact.object entries", n)
	}
	// A new grant after the objection, then another objection: withdrawn again, a new request.
	b.record(t, consent.Event{WorkspaceID: b.wsA, ContactID: id, Purpose: news.Name, Action: consent.ActionGranted, NoticeVersion: news.NoticeVersion})
	third := b.call(t, http.MethodPost, "/v1/contacts/crm-1/object", "contacts", map[string]any{"channel": "email", "note": "by phone"})
	if third.Status != http.StatusCreated || third.Body["withdrawn"] != float64(1) ||
		third.Body["privacy_request"].(map[string]any)["channel"] != "email" {
		t.Fatalf("objection after a new grant: %d %s", third.Status, third.Raw)
	}
}

// TestObjectWithoutConsent: a contact who never granted anything may still object; the
// objection is recorded (and the address suppressed) once.
func TestObjectWithoutConsent(t *testing.T) {
	t.Parallel()
	b := privacySetup(t)
	b.putContact(t, "contacts", "crm-2", "bob@example.com", "")
	if res := b.call(t, http.MethodPost, "/v1/contacts/crm-2/object", "contacts", nil); res.Status != http.StatusCreated || res.Body["withdrawn"] != float64(0) {
		t.Fatalf("object: %d %s", res.Status, res.Raw)
	}
	if res := b.call(t, http.MethodPost, "/v1/contacts/crm-2/object", "contacts", nil); res.Status != http.StatusOK {
		t.Fatalf("again: %d %s", res.Status, res.Raw)
	}
	if n := b.count(t, `SELECT count(*) FROM privacy_requests WHERE kind = 'object'`); n != 1 {
		t.Fatalf("%d objections recorded", n)
	}
}

func TestObjectHostile(t *testing.T) {
	t.Parallel()
	b := privacySetup(t)
	b.putContact(t, "contacts", "crm-1", "ada@example.com", "")
	b.putContact(t, "contactsB", "crm-b", "bea@example.com", "")
	if _, err := b.pool.Exec(context.Background(), `INSERT INTO contacts (workspace_id, external_id, email) VALUES ($1, 'erased', '')`, b.wsA); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, key, path string
		body            any
		status          int
		field           string
	}{
		{"unknown contact", "contacts", "/v1/contacts/nobody/object", nil, 404, ""},
		{"another workspace's contact", "contacts", "/v1/contacts/crm-b/object", nil, 404, ""},
		{"B's key on A's contact", "contactsB", "/v1/contacts/crm-1/object", nil, 404, ""},
		{"erased contact", "contacts", "/v1/contacts/erased/object", nil, 409, ""},
		{"privacy scope is not contacts:write", "privacy", "/v1/contacts/crm-1/object", nil, 403, ""},
		{"messages:send scope", "send", "/v1/contacts/crm-1/object", nil, 403, ""},
		{"no key", "", "/v1/contacts/crm-1/object", nil, 401, ""},
		{"external id with encoded CRLF", "contacts", "/v1/contacts/a%0d%0ab/object", nil, 422, "external_id"},
		{"unknown field", "contacts", "/v1/contacts/crm-1/object", map[string]any{"purpose": "all"}, 422, "purpose"},
		{"unknown channel", "contacts", "/v1/contacts/crm-1/object", map[string]any{"channel": "pigeon"}, 422, "channel"},
		{"channel with CRLF", "contacts", "/v1/contacts/crm-1/object", map[string]any{"channel": "api\r\n"}, 422, "channel"},
		{"note with an escape sequence", "contacts", "/v1/contacts/crm-1/object", map[string]any{"note": "\x1b]0;x\x07"}, 422, "note"},
		{"oversized body", "contacts", "/v1/contacts/crm-1/object", `{"note":"` + strings.Repeat("a", apiMaxBody) + `"}`, 413, ""},
		{"malformed body", "contacts", "/v1/contacts/crm-1/object", `{"note":`, 400, ""},
		{"a JSON array", "contacts", "/v1/contacts/crm-1/object", `[]`, 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.call(t, http.MethodPost, tc.path, tc.key, tc.body).RequireProblem(t, tc.status, tc.field)
		})
	}
	// Nothing of the refused requests was kept: no events, no suppression, no request.
	if n := b.count(t, `SELECT (SELECT count(*) FROM consent_events) + (SELECT count(*) FROM suppressions) + (SELECT count(*) FROM privacy_requests)`); n != 0 {
		t.Fatalf("%d rows written by refused objections", n)
	}
}
