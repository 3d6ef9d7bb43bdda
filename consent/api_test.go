package consent_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"herald/consent"
	"herald/internal/apitest"
	"herald/internal/contacts"
	"herald/internal/db"
	"herald/internal/workspace"
)

// apiBundle is the consent API on a fresh database with two workspaces, A and B, and keys of
// each scope on A.
type apiBundle struct {
	*bundle
	srv      *httptest.Server
	wsA, wsB int64
	key      map[string]string // "contacts", "campaigns", "admin", "send" on A; "contactsB" on B
	keyID    map[string]int64
}

const apiMaxBody = 4096

func apiSetup(t *testing.T) *apiBundle {
	t.Helper()
	ctx := context.Background()
	b := &apiBundle{bundle: setup(t), key: map[string]string{}, keyID: map[string]int64{}}
	b.wsA, b.wsB = b.ensureWorkspace(t, "acme"), b.ensureWorkspace(t, "globex")
	for name, k := range map[string]struct {
		ws    int64
		scope string
	}{
		"contacts": {b.wsA, workspace.ScopeContactsWrite}, "campaigns": {b.wsA, workspace.ScopeCampaignsWrite},
		"admin": {b.wsA, workspace.ScopeAdmin}, "send": {b.wsA, workspace.ScopeMessagesSend},
		"contactsB": {b.wsB, workspace.ScopeContactsWrite},
	} {
		key, err := workspace.CreateKey(ctx, b.pool, k.ws, []string{k.scope})
		if err != nil {
			t.Fatal(err)
		}
		p, err := workspace.Authenticate(ctx, b.pool, key)
		if err != nil {
			t.Fatal(err)
		}
		b.key[name], b.keyID[name] = key, p.KeyID
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := &consent.Handler{DB: b.pool, Service: b.svc, Logger: logger, MaxBodyBytes: apiMaxBody}
	r := chi.NewRouter()
	r.Route("/v1", func(r chi.Router) {
		r.Use(workspace.Auth(b.pool, logger))
		// As in cmd/herald: the contacts API shares the /contacts prefix.
		(&contacts.Handler{DB: b.pool, Logger: logger}).Routes(r)
		h.Routes(r)
	})
	b.srv = httptest.NewServer(r)
	t.Cleanup(b.srv.Close)
	return b
}

// call sends body (a string as is, anything else as JSON, nil for none) with the named key.
func (b *apiBundle) call(t *testing.T, method, path, key string, body any) apitest.Response {
	t.Helper()
	req := apitest.Request{Method: method, Path: path, Key: b.key[key]}
	switch v := body.(type) {
	case nil:
	case string:
		req.Body, req.ContentType = strings.NewReader(v), "application/json"
	default:
		raw, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		req.Body, req.ContentType = bytes.NewReader(raw), "application/json"
	}
	return apitest.Do(t, b.srv, req)
}

// ensureWorkspace creates the named workspace (or finds it) and returns its id.
func (b *bundle) ensureWorkspace(t testing.TB, name string) int64 {
	t.Helper()
	ws, err := workspace.Ensure(context.Background(), b.pool, name)
	if err != nil {
		t.Fatal(err)
	}
	return ws.ID
}

// count runs a query that returns one number.
func (b *bundle) count(t testing.TB, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := b.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (b *apiBundle) events(t *testing.T) int {
	t.Helper()
	return b.count(t, `SELECT count(*) FROM consent_events`)
}

// savePurpose posts a purpose with the campaigns key and returns its notice version.
func (b *apiBundle) savePurpose(t *testing.T, name, notice string, wantStatus int) int {
	t.Helper()
	res := b.call(t, http.MethodPost, "/v1/purposes", "campaigns", map[string]string{
		"name": name, "title": "The " + name, "description": "About " + name, "notice": notice})
	if res.Status != wantStatus {
		t.Fatalf("save purpose %s: %d %s; want %d", name, res.Status, res.Raw, wantStatus)
	}
	return int(res.Body["notice_version"].(float64))
}

func TestAPIPurposes(t *testing.T) {
	t.Parallel()
	b := apiSetup(t)
	if v := b.savePurpose(t, "news", "We send news.", http.StatusCreated); v != 1 {
		t.Fatalf("new purpose has notice_version %d", v)
	}
	if v := b.savePurpose(t, "news", "We send news.", http.StatusOK); v != 1 {
		t.Fatalf("same notice bumped the version to %d", v)
	}
	if v := b.savePurpose(t, "news", "We send news weekly.", http.StatusOK); v != 2 {
		t.Fatalf("new notice has version %d, want 2", v)
	}
	b.savePurpose(t, "offers", "We send offers.", http.StatusCreated)
	if n := b.count(t, `SELECT count(*) FROM purpose_notices n JOIN purposes p ON p.id = n.purpose_id WHERE p.name = 'news'`); n != 2 {
		t.Fatalf("%d notice versions kept, want 2", n)
	}

	// Any valid key reads.
	res := b.call(t, http.MethodGet, "/v1/purposes", "send", nil)
	list, _ := res.Body["purposes"].([]any)
	if res.Status != http.StatusOK || len(list) != 2 || list[0].(map[string]any)["name"] != "news" {
		t.Fatalf("list: %d %s", res.Status, res.Raw)
	}
	res = b.call(t, http.MethodGet, "/v1/purposes/news", "contacts", nil)
	if res.Status != http.StatusOK || res.Body["notice"] != "We send news weekly." || res.Body["notice_version"] != 2.0 {
		t.Fatalf("get: %d %s", res.Status, res.Raw)
	}
	b.call(t, http.MethodGet, "/v1/purposes/nope", "contacts", nil).RequireProblem(t, http.StatusNotFound, "")
	// Workspace B sees none of A's purposes.
	res = b.call(t, http.MethodGet, "/v1/purposes", "contactsB", nil)
	if list, _ := res.Body["purposes"].([]any); res.Status != http.StatusOK || list == nil || len(list) != 0 {
		t.Fatalf("B's list: %d %s", res.Status, res.Raw)
	}
	b.call(t, http.MethodGet, "/v1/purposes/news", "contactsB", nil).RequireProblem(t, http.StatusNotFound, "")
	if res := apitest.Do(t, b.srv, apitest.Request{Method: http.MethodGet, Path: "/v1/purposes"}); res.Status != http.StatusUnauthorized {
		t.Fatalf("no key: %d", res.Status)
	}

	for _, tc := range []struct {
		name, key string
		body      any
		status    int
		field     string
	}{
		{"contacts scope", "contacts", map[string]string{"name": "x", "title": "X", "notice": "n"}, http.StatusForbidden, ""},
		{"send scope", "send", map[string]string{"name": "x", "title": "X", "notice": "n"}, http.StatusForbidden, ""},
		{"bad name", "campaigns", map[string]string{"name": "News Letter", "title": "X", "notice": "n"}, http.StatusUnprocessableEntity, "name"},
		{"script name", "campaigns", map[string]string{"name": "<script>", "title": "X", "notice": "n"}, http.StatusUnprocessableEntity, "name"},
		{"crlf title", "campaigns", map[string]string{"name": "x", "title": "X\r\nBcc: a@b.c", "notice": "n"}, http.StatusUnprocessableEntity, "title"},
		{"no notice", "campaigns", map[string]string{"name": "x", "title": "X"}, http.StatusUnprocessableEntity, "notice"},
		{"unknown field", "campaigns", map[string]string{"name": "x", "title": "X", "notice": "n", "notice_version": "9"}, http.StatusUnprocessableEntity, "notice_version"},
		{"oversized", "campaigns", map[string]string{"name": "x", "title": "X", "notice": strings.Repeat("n", apiMaxBody)}, http.StatusRequestEntityTooLarge, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.call(t, http.MethodPost, "/v1/purposes", tc.key, tc.body).RequireProblem(t, tc.status, tc.field)
		})
	}
	if n := b.count(t, `SELECT count(*) FROM purposes`); n != 2 {
		t.Fatalf("%d purposes after refused requests, want 2", n)
	}
}

// apiContacts creates alice in A (and a purpose news with notice versions 1 and 2) and bob in B.
func (b *apiBundle) apiContacts(t *testing.T) {
	t.Helper()
	b.savePurpose(t, "news", "We send news.", http.StatusCreated)
	b.savePurpose(t, "news", "We send news weekly.", http.StatusOK)
	for ws, in := range map[int64]contacts.Input{
		b.wsA: {ExternalID: "crm-alice", Email: "Alice@Example.com"},
		b.wsB: {ExternalID: "crm-bob", Email: "bob@example.com"},
	} {
		if _, _, err := contacts.Upsert(context.Background(), b.pool, ws, in); err != nil {
			t.Fatal(err)
		}
	}
	// Ids that collide with the contacts API's own paths.
	for _, id := range []string{"import", "a/b"} {
		if _, _, err := contacts.Upsert(context.Background(), b.pool, b.wsA, contacts.Input{ExternalID: id, Email: "odd@example.com"}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAPIConsents(t *testing.T) {
	t.Parallel()
	b := apiSetup(t)
	b.apiContacts(t)
	occurred := b.now.Add(-time.Hour)
	res := b.call(t, http.MethodPost, "/v1/contacts/crm-alice/consents", "contacts", map[string]any{
		"purpose": "news", "action": "granted", "notice_version": 1, "occurred_at": occurred.Format(time.RFC3339),
		"expires_at": b.now.AddDate(1, 0, 0).Format(time.RFC3339), "ip": "2001:db8::1",
		"user_agent": "Mozilla/5.0 <script>alert(1)</script>", "proof": map[string]string{"form": "signup-v3"},
	})
	if res.Status != http.StatusCreated {
		t.Fatalf("grant: %d %s", res.Status, res.Raw)
	}
	if bytes.Contains(res.Raw, []byte("<script>")) {
		t.Fatalf("response carries raw markup: %s", res.Raw)
	}
	ev := res.Body["event"].(map[string]any)
	st := res.Body["state"].(map[string]any)
	wantActor := fmt.Sprintf("api_key:%d", b.keyID["contacts"])
	if ev["seq"] != 1.0 || ev["actor"] != wantActor || ev["source"] != "api" || ev["lawful_basis"] != "consent" ||
		ev["notice_version"] != 1.0 || len(ev["hash"].(string)) != 64 || ev["prev_hash"] != strings.Repeat("0", 64) ||
		ev["occurred_at"] != occurred.Format(time.RFC3339) || ev["recorded_at"] != b.now.Format(time.RFC3339) {
		t.Fatalf("event = %v", ev)
	}
	if evd := ev["evidence"].(map[string]any); evd["address"] != "Alice@example.com" || evd["ip"] != "2001:db8::1" {
		t.Fatalf("evidence = %v; want the contact's address and the given ip", evd)
	}
	if st["purpose"] != "news" || st["status"] != "granted" || st["live"] != true {
		t.Fatalf("state = %v", st)
	}
	// A withdrawal needs no notice version.
	res = b.call(t, http.MethodPost, "/v1/contacts/crm-alice/consents", "contacts", map[string]any{
		"purpose": "news", "action": "withdrawn", "source": "preference_centre"})
	if res.Status != http.StatusCreated || res.Body["event"].(map[string]any)["notice_version"] != 0.0 ||
		res.Body["state"].(map[string]any)["live"] != false {
		t.Fatalf("withdraw: %d %s", res.Status, res.Raw)
	}
	// A grant on another basis needs none either.
	res = b.call(t, http.MethodPost, "/v1/contacts/crm-alice/consents", "contacts", map[string]any{
		"purpose": "news", "action": "granted", "lawful_basis": "soft_opt_in"})
	if res.Status != http.StatusCreated {
		t.Fatalf("soft opt-in: %d %s", res.Status, res.Raw)
	}

	res = b.call(t, http.MethodGet, "/v1/contacts/crm-alice/consents", "contacts", nil)
	hist, _ := res.Body["history"].([]any)
	states, _ := res.Body["state"].([]any)
	if res.Status != http.StatusOK || len(hist) != 3 || len(states) != 1 {
		t.Fatalf("get: %d %s", res.Status, res.Raw)
	}
	for i, h := range hist {
		if h.(map[string]any)["seq"] != float64(i+1) {
			t.Fatalf("history is not oldest first: %s", res.Raw)
		}
	}
	if h0 := hist[0].(map[string]any); h0["evidence"].(map[string]any)["user_agent"] != "Mozilla/5.0 <script>alert(1)</script>" ||
		hist[1].(map[string]any)["prev_hash"] != h0["hash"] {
		t.Fatalf("history[0] = %v", h0)
	}
	if s := states[0].(map[string]any); s["status"] != "granted" || s["source"] != "api" {
		t.Fatalf("state = %v", s)
	}
	if n, err := consent.Verify(context.Background(), b.pool, b.wsA); err != nil || n != 3 {
		t.Fatalf("verify: %d %v", n, err)
	}
	for _, path := range []string{"/v1/contacts/import/consents", "/v1/contacts/a%2Fb/consents"} {
		res = b.call(t, http.MethodPost, path, "contacts", map[string]any{"purpose": "news", "action": "withdrawn"})
		if res.Status != http.StatusCreated {
			t.Fatalf("POST %s: %d %s", path, res.Status, res.Raw)
		}
		if res = b.call(t, http.MethodGet, path, "contacts", nil); res.Status != http.StatusOK || len(res.Body["history"].([]any)) != 1 {
			t.Fatalf("GET %s: %d %s", path, res.Status, res.Raw)
		}
	}

	// Source admin needs the admin scope and is audited.
	b.call(t, http.MethodPost, "/v1/contacts/crm-alice/consents", "contacts", map[string]any{
		"purpose": "news", "action": "withdrawn", "source": "admin"}).RequireProblem(t, http.StatusForbidden, "")
	res = b.call(t, http.MethodPost, "/v1/contacts/crm-alice/consents", "admin", map[string]any{
		"purpose": "news", "action": "withdrawn", "source": "admin"})
	if res.Status != http.StatusCreated || res.Body["event"].(map[string]any)["seq"] != 6.0 {
		t.Fatalf("admin: %d %s", res.Status, res.Raw)
	}
	id := res.Body["event"].(map[string]any)["id"].(float64)
	if n := b.count(t, `SELECT count(*) FROM audit_log WHERE workspace_id = $1 AND action = 'consent.record_admin'
		AND actor = $2 AND (detail->>'event_id')::bigint = $3`, b.wsA, fmt.Sprintf("api_key:%d", b.keyID["admin"]), int64(id)); n != 1 {
		t.Fatalf("%d audit rows for the admin event", n)
	}
}

func TestAPIConsentsHostile(t *testing.T) {
	t.Parallel()
	b := apiSetup(t)
	b.apiContacts(t)
	grant := func(kv ...any) map[string]any {
		m := map[string]any{"purpose": "news", "action": "granted", "notice_version": 1}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
			} else {
				m[kv[i].(string)] = kv[i+1]
			}
		}
		return m
	}
	alice := "/v1/contacts/crm-alice/consents"
	for _, tc := range []struct {
		name, path, key string
		body            any
		status          int
		field           string
	}{
		{"unknown purpose", alice, "contacts", grant("purpose", "nope"), 422, "purpose"},
		{"missing purpose", alice, "contacts", grant("purpose", nil), 422, "purpose"},
		{"crlf purpose", alice, "contacts", grant("purpose", "news\r\n"), 422, "purpose"},
		{"script purpose", alice, "contacts", grant("purpose", "<script>alert(1)</script>"), 422, "purpose"},
		{"other workspace's purpose name", "/v1/contacts/crm-bob/consents", "contactsB", grant(), 422, "purpose"},
		{"bad action", alice, "contacts", grant("action", "revoked"), 422, "action"},
		{"bad source", alice, "contacts", grant("source", "crm"), 422, "source"},
		{"bad basis", alice, "contacts", grant("lawful_basis", "legitimate_interest"), 422, "lawful_basis"},
		{"grant without notice", alice, "contacts", grant("notice_version", nil), 422, "notice_version"},
		{"unknown notice", alice, "contacts", grant("notice_version", 3), 422, "notice_version"},
		{"negative notice", alice, "contacts", grant("notice_version", -1), 422, "notice_version"},
		{"notice not a number", alice, "contacts", grant("notice_version", "1"), 422, "notice_version"},
		{"expires before occurred", alice, "contacts", grant("occurred_at", "2026-01-02T00:00:00Z", "expires_at", "2026-01-01T00:00:00Z"), 422, "expires_at"},
		{"withdrawal expires", alice, "contacts", grant("action", "withdrawn", "expires_at", "2027-01-01T00:00:00Z"), 422, "expires_at"},
		{"occurred garbage", alice, "contacts", grant("occurred_at", "yesterday"), 422, "occurred_at"},
		{"occurred in the future", alice, "contacts", grant("occurred_at", "2026-11-24T14:00:00Z"), 422, "occurred_at"},
		{"crlf ip", alice, "contacts", grant("ip", "192.0.2.1\r\nX-Injected: 1"), 422, "ip"},
		{"not an ip", alice, "contacts", grant("ip", "localhost"), 422, "ip"},
		{"ip zone", alice, "contacts", grant("ip", "fe80::1%eth0"), 422, "ip"},
		{"crlf user agent", alice, "contacts", grant("user_agent", "Mozilla\r\nSet-Cookie: x=1"), 422, "user_agent"},
		{"nul user agent", alice, "contacts", grant("user_agent", "Mozilla\x00"), 422, "user_agent"},
		{"crlf proof", alice, "contacts", grant("proof", map[string]string{"form": "a\r\nb"}), 422, "proof"},
		{"proof not strings", alice, "contacts", grant("proof", map[string]any{"n": 1}), 422, ""},
		{"actor is not the client's", alice, "contacts", grant("actor", "admin:root"), 422, "actor"},
		{"unknown field", alice, "contacts", grant("contact_id", 1), 422, "contact_id"},
		{"oversized", alice, "contacts", grant("user_agent", strings.Repeat("A", apiMaxBody)), 413, ""},
		{"not json", alice, "contacts", `{"purpose": "news",`, 400, ""},
		{"two objects", alice, "contacts", `{"purpose": "news"} {}`, 400, ""},
		{"other workspace's contact", "/v1/contacts/crm-bob/consents", "contacts", grant(), 404, ""},
		{"other workspace's key", alice, "contactsB", grant(), 404, ""},
		{"unknown contact", "/v1/contacts/crm-nobody/consents", "contacts", grant(), 404, ""},
		{"control char in external id", "/v1/contacts/crm%0D%0Aalice/consents", "contacts", grant(), 422, "external_id"},
		{"send scope", alice, "send", grant(), 403, ""},
		{"campaigns scope", alice, "campaigns", grant(), 403, ""},
		{"admin source without admin", alice, "contacts", grant("source", "admin"), 403, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := b.events(t)
			b.call(t, http.MethodPost, tc.path, tc.key, tc.body).RequireProblem(t, tc.status, tc.field)
			if after := b.events(t); after != before {
				t.Fatalf("%d events recorded by a refused request", after-before)
			}
		})
	}
	if n := b.events(t); n != 0 {
		t.Fatalf("%d events recorded", n)
	}
	if n := b.count(t, `SELECT count(*) FROM consent_state`); n != 0 {
		t.Fatalf("%d state rows written", n)
	}
	for _, tc := range []struct{ path, key string }{
		{"/v1/contacts/crm-bob/consents", "contacts"},
		{"/v1/contacts/crm-alice/consents", "contactsB"},
		{"/v1/contacts/crm-nobody/consents", "contacts"},
	} {
		b.call(t, http.MethodGet, tc.path, tc.key, nil).RequireProblem(t, http.StatusNotFound, "")
	}
	b.call(t, http.MethodGet, "/v1/contacts/crm-alice/consents", "send", nil).RequireProblem(t, http.StatusForbidden, "")
}

func TestAPISuppressions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := apiSetup(t)
	res := b.call(t, http.MethodPost, "/v1/suppressions", "contacts", map[string]string{
		"address": " Bob@Example.COM ", "reason": "manual", "detail": "asked by phone"})
	if res.Status != http.StatusCreated || res.Body["address"] != "Bob@example.com" || res.Body["reason"] != "manual" ||
		res.Body["actor"] != fmt.Sprintf("api_key:%d", b.keyID["contacts"]) {
		t.Fatalf("add: %d %s", res.Status, res.Raw)
	}
	res = b.call(t, http.MethodPost, "/v1/suppressions", "contacts", map[string]string{"address": "Bob@example.com"})
	if res.Status != http.StatusOK || res.Body["detail"] != "asked by phone" {
		t.Fatalf("add again: %d %s", res.Status, res.Raw)
	}
	for _, tc := range []struct {
		name   string
		body   any
		status int
		field  string
	}{
		{"reason not manual", map[string]string{"address": "x@example.com", "reason": "hard_bounce"}, 422, "reason"},
		{"reason erased", map[string]string{"address": "x@example.com", "reason": "erased"}, 422, "reason"},
		{"crlf address", map[string]string{"address": "x@example.com\r\nBcc: y@example.com"}, 422, "address"},
		{"display name", map[string]string{"address": "X <x@example.com>"}, 422, "address"},
		{"script address", map[string]string{"address": "<script>@example.com"}, 422, "address"},
		{"no address", map[string]string{"reason": "manual"}, 422, "address"},
		{"crlf detail", map[string]string{"address": "x@example.com", "detail": "a\r\nb"}, 422, "detail"},
		{"unknown field", map[string]string{"address": "x@example.com", "actor": "me"}, 422, "actor"},
		{"oversized", map[string]string{"address": "x@example.com", "detail": strings.Repeat("d", apiMaxBody)}, 413, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.call(t, http.MethodPost, "/v1/suppressions", "contacts", tc.body).RequireProblem(t, tc.status, tc.field)
		})
	}
	b.call(t, http.MethodPost, "/v1/suppressions", "send", map[string]string{"address": "x@example.com"}).RequireProblem(t, http.StatusForbidden, "")
	if n := b.count(t, `SELECT count(*) FROM suppressions`); n != 1 {
		t.Fatalf("%d entries after refused requests, want 1", n)
	}

	res = b.call(t, http.MethodGet, "/v1/suppressions/"+url.PathEscape("bob@EXAMPLE.com"), "contacts", nil)
	if res.Status != http.StatusOK || res.Body["address"] != "Bob@example.com" {
		t.Fatalf("get: %d %s", res.Status, res.Raw)
	}
	b.call(t, http.MethodGet, "/v1/suppressions/nobody@example.com", "contacts", nil).RequireProblem(t, http.StatusNotFound, "")
	b.call(t, http.MethodGet, "/v1/suppressions/Bob@example.com", "contactsB", nil).RequireProblem(t, http.StatusNotFound, "")
	b.call(t, http.MethodGet, "/v1/suppressions/not-an-address", "contacts", nil).RequireProblem(t, http.StatusUnprocessableEntity, "address")
	b.call(t, http.MethodGet, "/v1/suppressions/a%0D%0A@example.com", "contacts", nil).RequireProblem(t, http.StatusUnprocessableEntity, "address")

	// Erasure entries are never removed, not even by an admin.
	if _, err := b.svc.Suppress(ctx, b.pool, consent.Suppression{WorkspaceID: b.wsA, Address: "gone@example.com", Reason: consent.ReasonErased}); err != nil {
		t.Fatal(err)
	}
	res = b.call(t, http.MethodGet, "/v1/suppressions/gone@example.com", "contacts", nil)
	if res.Status != http.StatusOK || res.Body["address"] != "" || res.Body["reason"] != "erased" {
		t.Fatalf("erased entry: %d %s", res.Status, res.Raw)
	}
	p := b.call(t, http.MethodDelete, "/v1/suppressions/gone@example.com", "admin", nil).RequireProblem(t, http.StatusConflict, "")
	if !strings.Contains(p.Detail, "erased") {
		t.Fatalf("409 detail %q does not say why", p.Detail)
	}
	b.call(t, http.MethodDelete, "/v1/suppressions/Bob@example.com", "contacts", nil).RequireProblem(t, http.StatusForbidden, "")
	b.call(t, http.MethodDelete, "/v1/suppressions/nobody@example.com", "admin", nil).RequireProblem(t, http.StatusNotFound, "")
	if n := b.count(t, `SELECT count(*) FROM audit_log WHERE action <> 'api_key.create'`); n != 0 {
		t.Fatalf("%d audit rows for refused deletions", n)
	}

	res = b.call(t, http.MethodDelete, "/v1/suppressions/bob@example.com", "admin", nil)
	if res.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", res.Status, res.Raw)
	}
	b.call(t, http.MethodGet, "/v1/suppressions/Bob@example.com", "contacts", nil).RequireProblem(t, http.StatusNotFound, "")
	var actor, target string
	var detail map[string]any
	err := b.pool.QueryRow(ctx, `SELECT actor, target, detail FROM audit_log WHERE workspace_id = $1 AND action = 'suppression.delete'`, b.wsA).
		Scan(&actor, &target, &detail)
	if err != nil {
		t.Fatal(err)
	}
	wantTarget := hex.EncodeToString(b.svc.Keys.AddressHash(b.wsA, "Bob@example.com"))
	if actor != fmt.Sprintf("api_key:%d", b.keyID["admin"]) || target != wantTarget || detail["reason"] != "manual" {
		t.Fatalf("audit = %q %q %v; want the admin key, target %s, reason manual", actor, target, detail, wantTarget)
	}
	if n := b.count(t, `SELECT count(*) FROM audit_log WHERE target::text ILIKE '%bob%' OR detail::text ILIKE '%bob%'`); n != 0 {
		t.Fatal("the audit log holds the address in clear")
	}
}

func TestAPISuppressionList(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := apiSetup(t)
	// 13 entries, several sharing a created_at so the keyset's tie-break on the hash is exercised.
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var all []string
	for i := range 13 {
		addr := fmt.Sprintf("user%02d@example.com", i)
		reason := consent.ReasonManual
		if i%3 == 0 {
			reason = consent.ReasonHardBounce
		}
		if _, err := b.svc.Suppress(ctx, b.pool, consent.Suppression{WorkspaceID: b.wsA, Address: addr, Reason: reason}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.pool.Exec(ctx, `UPDATE suppressions SET created_at = $3 WHERE workspace_id = $1 AND address_hash = $2`,
			b.wsA, b.svc.Keys.AddressHash(b.wsA, addr), base.Add(time.Duration(i/4)*time.Second)); err != nil {
			t.Fatal(err)
		}
		all = append(all, addr)
	}
	if _, err := b.svc.Suppress(ctx, b.pool, consent.Suppression{WorkspaceID: b.wsB, Address: "b@example.com", Reason: consent.ReasonManual}); err != nil {
		t.Fatal(err)
	}
	rows, err := b.pool.Query(ctx, `SELECT address FROM suppressions WHERE workspace_id = $1 ORDER BY created_at DESC, address_hash`, b.wsA)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			t.Fatal(err)
		}
		want = append(want, a)
	}

	page := func(query string) ([]string, string) {
		t.Helper()
		res := b.call(t, http.MethodGet, "/v1/suppressions?"+query, "contacts", nil)
		if res.Status != http.StatusOK {
			t.Fatalf("list %s: %d %s", query, res.Status, res.Raw)
		}
		var out []string
		for _, e := range res.Body["suppressions"].([]any) {
			out = append(out, e.(map[string]any)["address"].(string))
		}
		next, _ := res.Body["next_cursor"].(string)
		return out, next
	}
	var got []string
	cursor, pages := "", 0
	for {
		q := url.Values{"limit": {"3"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		items, next := page(q.Encode())
		got, pages = append(got, items...), pages+1
		if next == "" {
			break
		}
		cursor = next
	}
	if strings.Join(got, ",") != strings.Join(want, ",") || pages != 5 {
		t.Fatalf("paged %d times: %v\nwant %v", pages, got, want)
	}
	if items, next := page("reason=hard_bounce"); len(items) != 5 || next != "" {
		t.Fatalf("hard bounces: %v %q", items, next)
	}
	if items, _ := page(""); len(items) != len(all) {
		t.Fatalf("default page: %d entries", len(items))
	}
	res := b.call(t, http.MethodGet, "/v1/suppressions", "contactsB", nil)
	if list := res.Body["suppressions"].([]any); len(list) != 1 {
		t.Fatalf("B sees %d entries", len(list))
	}
	for _, tc := range []struct{ query, field string }{
		{"reason=sad", "reason"}, {"limit=0", "limit"}, {"limit=1001", "limit"}, {"limit=x", "limit"},
		{"cursor=!!", "cursor"}, {"cursor=AAAA", "cursor"},
	} {
		b.call(t, http.MethodGet, "/v1/suppressions?"+tc.query, "contacts", nil).RequireProblem(t, http.StatusUnprocessableEntity, tc.field)
	}
	b.call(t, http.MethodGet, "/v1/suppressions", "send", nil).RequireProblem(t, http.StatusForbidden, "")
}

func TestAPISettings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := apiSetup(t)
	b.call(t, http.MethodGet, "/v1/consent/settings", "contacts", nil).RequireProblem(t, http.StatusForbidden, "")
	b.call(t, http.MethodPut, "/v1/consent/settings", "campaigns", map[string]string{}).RequireProblem(t, http.StatusForbidden, "")
	res := b.call(t, http.MethodGet, "/v1/consent/settings", "admin", nil)
	formKey, _ := res.Body["form_key"].(string)
	if res.Status != http.StatusOK || !strings.HasPrefix(formKey, "fk_") || res.Body["privacy_url"] != "" {
		t.Fatalf("get: %d %s", res.Status, res.Raw)
	}
	if again := b.call(t, http.MethodGet, "/v1/consent/settings", "admin", nil); again.Body["form_key"] != formKey {
		t.Fatalf("form key changed between reads: %s", again.Raw)
	}
	for _, tc := range []struct {
		name  string
		body  map[string]string
		field string
	}{
		{"http", map[string]string{"privacy_url": "http://acme.example/privacy"}, "privacy_url"},
		{"javascript", map[string]string{"privacy_url": "javascript:alert(1)"}, "privacy_url"},
		{"no host", map[string]string{"privacy_url": "https:///privacy"}, "privacy_url"},
		{"crlf url", map[string]string{"privacy_url": "https://acme.example/\r\nx"}, "privacy_url"},
		{"bad sender", map[string]string{"confirm_from": "not an address"}, "confirm_from"},
		{"crlf sender", map[string]string{"confirm_from": "news@acme.example\r\nBcc: all@x.example"}, "confirm_from"},
		{"form key is not settable", map[string]string{"form_key": "fk_mine"}, "form_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.call(t, http.MethodPut, "/v1/consent/settings", "admin", tc.body).RequireProblem(t, http.StatusUnprocessableEntity, tc.field)
		})
	}
	if n := b.count(t, `SELECT count(*) FROM audit_log WHERE action <> 'api_key.create'`); n != 0 {
		t.Fatalf("%d audit rows for refused changes", n)
	}
	res = b.call(t, http.MethodPut, "/v1/consent/settings", "admin", map[string]string{
		"privacy_url": "https://acme.example/privacy", "confirm_from": "News@ACME.example"})
	if res.Status != http.StatusOK || res.Body["form_key"] != formKey || res.Body["confirm_from"] != "News@acme.example" ||
		res.Body["privacy_url"] != "https://acme.example/privacy" {
		t.Fatalf("put: %d %s", res.Status, res.Raw)
	}
	if n := b.count(t, `SELECT count(*) FROM audit_log WHERE action = 'consent_settings.put' AND workspace_id = $1`, b.wsA); n != 1 {
		t.Fatalf("%d audit rows for the change", n)
	}
	s, err := consent.SettingsByFormKey(ctx, b.pool, formKey)
	if err != nil || s.WorkspaceID != b.wsA || s.ConfirmFrom != "News@acme.example" {
		t.Fatalf("by form key: %+v %v", s, err)
	}
	if _, err := consent.SettingsByFormKey(ctx, b.pool, "fk_nope"); !errors.Is(err, db.ErrNotFound) {
		t.Fatalf("unknown form key: %v", err)
	}
	// SettingsPut on a workspace with no row yet creates it; B gets a form key of its own.
	sb, err := consent.SettingsPut(ctx, b.pool, consent.Settings{WorkspaceID: b.wsB})
	if err != nil || sb.FormKey == "" || sb.FormKey == formKey {
		t.Fatalf("B: %+v %v", sb, err)
	}
	if got, err := consent.SettingsGet(ctx, b.pool, b.wsB); err != nil || got != sb {
		t.Fatalf("B get = %+v %v; want %+v", got, err, sb)
	}
}
