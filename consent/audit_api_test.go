package consent_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"herald/consent"
)

// auditActions lists the actions of a GET /v1/audit page and its next cursor.
func (b *privacyBundle) auditPage(t *testing.T, key, query string) (actions []string, ids []int64, next string) {
	t.Helper()
	res := b.call(t, http.MethodGet, "/v1/audit"+query, key, nil)
	if res.Status != 200 {
		t.Fatalf("GET /v1/audit%s: %d %s", query, res.Status, res.Raw)
	}
	for _, e := range res.Body["entries"].([]any) {
		m := e.(map[string]any)
		actions = append(actions, m["action"].(string))
		ids = append(ids, int64(m["id"].(float64)))
		if _, ok := m["detail"].(map[string]any); !ok {
			t.Fatalf("detail is not an object: %s", res.Raw)
		}
	}
	next, _ = res.Body["next_cursor"].(string)
	return actions, ids, next
}

func TestAuditAPI(t *testing.T) {
	t.Parallel()
	b := privacySetup(t)
	ctx := context.Background()
	// Setup already audited the creation of every key (workspace.CreateKey): 4 on A, 2 on B.
	actions, _, _ := b.auditPage(t, "admin", "")
	if strings.Join(actions, ",") != "api_key.create,api_key.create,api_key.create,api_key.create" {
		t.Fatalf("A's log after setup = %v", actions)
	}
	adminActor := "api_key:" + strconv.FormatInt(b.keyID["admin"], 10)
	// Settings changes and suppression removals are audited by their handlers.
	if res := b.call(t, http.MethodPut, "/v1/consent/settings", "admin", map[string]any{"privacy_url": "https://acme.example/privacy"}); res.Status != 200 {
		t.Fatalf("settings: %d %s", res.Status, res.Raw)
	}
	if res := b.call(t, http.MethodPost, "/v1/suppressions", "contacts", map[string]any{"address": "gone@example.com"}); res.Status != 201 {
		t.Fatalf("suppress: %d %s", res.Status, res.Raw)
	}
	if res := b.call(t, http.MethodDelete, "/v1/suppressions/gone@example.com", "admin", nil); res.Status != 204 {
		t.Fatalf("unsuppress: %d %s", res.Status, res.Raw)
	}
	b.postRequest(t, map[string]any{"kind": "access"})
	// The log's times are the database's: one entry is placed an hour past them, after mid.
	var mid time.Time
	if err := b.pool.QueryRow(ctx, `SELECT now() + interval '1 hour'`).Scan(&mid); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(ctx, `INSERT INTO audit_log (workspace_id, actor, action, target, at) VALUES ($1, 'test', 'late.entry', '', $2)`,
		b.wsA, mid.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	want := []string{"late.entry", "privacy_request.record", "suppression.delete", "consent_settings.put",
		"api_key.create", "api_key.create", "api_key.create", "api_key.create"}
	all, allIDs, next := b.auditPage(t, "admin", "")
	if strings.Join(all, ",") != strings.Join(want, ",") || next != "" {
		t.Fatalf("log = %v (next %q), want %v", all, next, want)
	}
	// Paging by 3, newest first, visits every entry once.
	var paged []int64
	cursor := ""
	for range 10 {
		q := "?limit=3"
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		_, ids, next := b.auditPage(t, "admin", q)
		paged = append(paged, ids...)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(paged) != len(allIDs) || paged[0] != allIDs[0] || paged[len(paged)-1] != allIDs[len(allIDs)-1] {
		t.Fatalf("paged ids %v, want %v", paged, allIDs)
	}
	for _, tc := range []struct {
		query string
		want  string
	}{
		{"?action=suppression.delete", "suppression.delete"},
		{"?actor=" + url.QueryEscape(adminActor), "suppression.delete,consent_settings.put"},
		{"?actor=cli&action=api_key.create&limit=2", "api_key.create,api_key.create"},
		{"?since=" + url.QueryEscape(mid.Format(time.RFC3339)), "late.entry"},
		{"?until=" + url.QueryEscape(mid.Format(time.RFC3339)) + "&action=late.entry", ""},
		{"?action=no.such", ""},
	} {
		got, _, _ := b.auditPage(t, "admin", tc.query)
		if strings.Join(got, ",") != tc.want {
			t.Errorf("%s: %v, want %s", tc.query, got, tc.want)
		}
	}
	// B's admin sees B's two key creations, nothing of A's.
	if got, _, _ := b.auditPage(t, "adminB", ""); strings.Join(got, ",") != "api_key.create,api_key.create" {
		t.Fatalf("B's log = %v", got)
	}
	// A cursor taken from A's log does not open A's entries to B: the workspace filter holds.
	_, _, nextA := b.auditPage(t, "admin", "?limit=1")
	if got, _, _ := b.auditPage(t, "adminB", "?cursor="+nextA); len(got) != 2 {
		t.Fatalf("B with A's cursor: %v", got)
	}
}

func TestAuditAPIHostile(t *testing.T) {
	t.Parallel()
	b := privacySetup(t)
	for _, tc := range []struct {
		name, key, query string
		status           int
		field            string
	}{
		{"privacy scope is not enough", "privacy", "", 403, ""},
		{"contacts scope", "contacts", "", 403, ""},
		{"no key", "", "", 401, ""},
		{"garbage cursor", "admin", "?cursor=***", 422, "cursor"},
		{"short cursor", "admin", "?cursor=AAAA", 422, "cursor"},
		{"zero cursor", "admin", "?cursor=AAAAAAAAAAA", 422, "cursor"},
		{"bad since", "admin", "?since=yesterday", 422, "since"},
		{"bad until", "admin", "?until=2026-13-01T00:00:00Z", 422, "until"},
		{"until before since", "admin", "?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", 422, "until"},
		{"action with CRLF", "admin", "?action=a%0d%0aX-Injected:%201", 422, "action"},
		{"actor with a NUL", "admin", "?actor=a%00b", 422, "actor"},
		{"action too long", "admin", "?action=" + strings.Repeat("a", 101), 422, "action"},
		{"limit not a number", "admin", "?limit=ten", 422, "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.call(t, http.MethodGet, "/v1/audit"+tc.query, tc.key, nil).RequireProblem(t, tc.status, tc.field)
		})
	}
}

// TestAuditHoldsNoPersonalData: after a contact is created, rectified, objected for and named in
// a privacy request with a note, no audit entry holds the address, the name or the note.
func TestAuditHoldsNoPersonalData(t *testing.T) {
	t.Parallel()
	b := privacySetup(t)
	ctx := context.Background()
	p := b.purpose(t, b.wsA, "newsletter")
	id := b.putContact(t, "contacts", "crm-7", "grace.hopper@example.com", "Grace Hopper")
	b.record(t, consent.Event{WorkspaceID: b.wsA, ContactID: id, Purpose: p.Name, Action: consent.ActionGranted, NoticeVersion: p.NoticeVersion})
	if res := b.call(t, http.MethodPut, "/v1/contacts/crm-7", "contacts", map[string]any{"email": "g.hopper@example.org",
		"name": "Grace B. Hopper", "attributes": map[string]any{"city": "Arlington"}}); res.Status != 200 {
		t.Fatalf("rectify: %d %s", res.Status, res.Raw)
	}
	b.postRequest(t, map[string]any{"kind": "rectify", "contact": "crm-7", "note": "Grace Hopper wrote from grace.hopper@example.com"})
	if res := b.call(t, http.MethodPost, "/v1/contacts/crm-7/object", "contacts", map[string]any{"note": "Grace Hopper called"}); res.Status != 201 {
		t.Fatalf("object: %d %s", res.Status, res.Raw)
	}
	if n := b.count(t, `SELECT count(*) FROM audit_log WHERE workspace_id = $1 AND action IN
		('contact.rectify', 'privacy_request.record', 'contact.object')`, b.wsA); n != 4 {
		t.Fatalf("%d audit entries for the rectification, the two requests and the objection", n)
	}
	for _, needle := range []string{"grace", "hopper", "example.com", "example.org", "arlington", "wrote", "called"} {
		if n := b.count(t, `SELECT count(*) FROM audit_log WHERE lower(actor || target || detail::text) LIKE '%' || $1 || '%'`, needle); n != 0 {
			rows, _ := b.pool.Query(ctx, `SELECT action || ' ' || target || ' ' || detail::text FROM audit_log`)
			for rows.Next() {
				var s string
				_ = rows.Scan(&s)
				t.Log(s)
			}
			rows.Close()
			t.Fatalf("%d audit entries contain %q", n, needle)
		}
	}
}
