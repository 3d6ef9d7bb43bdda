package consent_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"herald/consent"
)

// TestRestrict: a restricted contact gets no marketing (single and batch decisions) and no
// tracking, still gets transactional mail, keeps its consent and data; lifting restores all of it.
// Both directions are audited, a restriction is a completed privacy request, repeats change
// nothing, and another workspace's key cannot touch the contact.
func TestRestrict(t *testing.T) {
	t.Parallel()
	b := privacySetup(t)
	ctx := context.Background()
	news := b.purpose(t, b.wsA, "newsletter")
	id := b.putContact(t, "contacts", "crm-1", "ada@example.com", "Ada")
	other := b.putContact(t, "contacts", "crm-2", "bob@example.com", "Bob")
	for _, c := range []int64{id, other} {
		b.record(t, consent.Event{WorkspaceID: b.wsA, ContactID: c, Purpose: news.Name, Action: consent.ActionGranted, NoticeVersion: news.NoticeVersion})
	}
	if _, err := consent.EnsureTrackingPurpose(ctx, b.pool, b.wsA); err != nil {
		t.Fatal(err)
	}
	for _, c := range []int64{id, other} {
		b.record(t, consent.Event{WorkspaceID: b.wsA, ContactID: c, Purpose: consent.TrackingPurpose, Action: consent.ActionGranted, NoticeVersion: 1})
	}

	// decisions returns the single marketing decision for id, the batch decisions for id and
	// other, the tracking answers for both, and the transactional decision for id.
	decisions := func() (single consent.Decision, batch []consent.Decision, track []bool, trans consent.Decision) {
		t.Helper()
		err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
			var err error
			if single, err = b.svc.Decide(ctx, tx, consent.Request{WorkspaceID: b.wsA, ContactID: &id, Address: "ada@example.com",
				Stream: consent.StreamMarketing, Purpose: news.Name}); err != nil {
				return err
			}
			if batch, err = b.svc.DecideBatch(ctx, tx, b.wsA, news.Name, []consent.BatchRecipient{
				{ContactID: id, Address: "ada@example.com"}, {ContactID: other, Address: "bob@example.com"}}); err != nil {
				return err
			}
			if track, err = b.svc.TrackingAllowed(ctx, tx, b.wsA, []int64{id, other}); err != nil {
				return err
			}
			trans, err = b.svc.Decide(ctx, tx, consent.Request{WorkspaceID: b.wsA, ContactID: &id, Address: "ada@example.com",
				Stream: consent.StreamTransactional})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	if s, bt, tr, tx := decisions(); !s.Allowed || !bt[0].Allowed || !bt[1].Allowed || !tr[0] || !tr[1] || !bt[0].Track || !bt[1].Track || !tx.Allowed {
		t.Fatalf("before the restriction: %+v %+v %v %+v", s, bt, tr, tx)
	}

	res := b.call(t, http.MethodPost, "/v1/contacts/crm-1/restrict", "contacts", `{"note":"asked by phone"}`)
	if res.Status != http.StatusCreated || res.Body["restricted"] != true || res.Body["restricted_at"] == nil {
		t.Fatalf("restrict: %d %s", res.Status, res.Raw)
	}
	req := res.Body["privacy_request"].(map[string]any)
	if req["kind"] != "restrict" || req["status"] != "completed" || req["contact"] != "crm-1" {
		t.Fatalf("privacy request = %v", req)
	}
	s, bt, tr, tx := decisions()
	if s.Allowed || s.Reason != consent.ReasonRestricted || bt[0].Allowed || bt[0].Reason != consent.ReasonRestricted ||
		!bt[1].Allowed || tr[0] || !tr[1] || bt[0].Track || !bt[1].Track || !tx.Allowed {
		t.Fatalf("while restricted: %+v %+v %v %+v", s, bt, tr, tx)
	}
	// The data and the consent are kept.
	states, err := b.svc.States(ctx, b.pool, b.wsA, id)
	if err != nil || len(states) != 2 {
		t.Fatalf("states while restricted: %+v %v", states, err)
	}
	if n := b.count(t, `SELECT count(*) FROM contacts WHERE id = $1 AND email = 'ada@example.com' AND name = 'Ada'`, id); n != 1 {
		t.Fatal("the restricted contact's data was changed")
	}

	// Repeats change nothing.
	audits := b.count(t, `SELECT count(*) FROM audit_log WHERE action LIKE 'contact.%restrict'`)
	if again := b.call(t, http.MethodPost, "/v1/contacts/crm-1/restrict", "contacts", nil); again.Status != http.StatusOK || again.Body["restricted"] != true {
		t.Fatalf("second restrict: %d %s", again.Status, again.Raw)
	}
	if b.count(t, `SELECT count(*) FROM audit_log WHERE action LIKE 'contact.%restrict'`) != audits || b.count(t, `SELECT count(*) FROM privacy_requests`) != 1 {
		t.Fatal("a repeated restriction wrote something")
	}

	// Another workspace's key sees no such contact; hostile input gets a 4xx.
	for _, tc := range []struct {
		name, method, path, key string
		body                    any
		status                  int
	}{
		{"other workspace", http.MethodPost, "/v1/contacts/crm-1/restrict", "contactsB", nil, http.StatusNotFound},
		{"other workspace lift", http.MethodDelete, "/v1/contacts/crm-1/restrict", "contactsB", nil, http.StatusNotFound},
		{"no such contact", http.MethodPost, "/v1/contacts/nobody/restrict", "contacts", nil, http.StatusNotFound},
		{"wrong scope", http.MethodPost, "/v1/contacts/crm-1/restrict", "send", nil, http.StatusForbidden},
		{"not JSON", http.MethodPost, "/v1/contacts/crm-1/restrict", "contacts", `{"note":`, http.StatusBadRequest},
		{"unknown field", http.MethodPost, "/v1/contacts/crm-1/restrict", "contacts", `{"until":"never"}`, http.StatusUnprocessableEntity},
		{"oversized", http.MethodPost, "/v1/contacts/crm-1/restrict", "contacts", `{"note":"` + strings.Repeat("a", apiMaxBody) + `"}`, http.StatusRequestEntityTooLarge},
	} {
		if res := b.call(t, tc.method, tc.path, tc.key, tc.body); res.Status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, res.Status, res.Raw, tc.status)
		}
	}

	lift := b.call(t, http.MethodDelete, "/v1/contacts/crm-1/restrict", "contacts", nil)
	if lift.Status != http.StatusOK || lift.Body["restricted"] != false {
		t.Fatalf("lift: %d %s", lift.Status, lift.Raw)
	}
	if s, bt, tr, tx := decisions(); !s.Allowed || !bt[0].Allowed || !tr[0] || !tx.Allowed {
		t.Fatalf("after lifting: %+v %+v %v %+v", s, bt, tr, tx)
	}
	if n := b.count(t, `SELECT count(*) FROM audit_log WHERE action IN ('contact.restrict', 'contact.unrestrict')`); n != 2 {
		t.Fatalf("%d restriction audit entries, want 2", n)
	}
	if n, err := consent.Verify(ctx, b.pool, b.wsA); err != nil {
		t.Fatalf("ledger does not verify after %d events: %v", n, err)
	}
}
