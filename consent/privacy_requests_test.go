package consent_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"herald/consent"
	"herald/internal/contacts"
	"herald/internal/db"
	"herald/internal/workspace"
)

// privacyBundle is the privacy API (with the contacts and consent APIs beside it, as in
// cmd/herald) on a fresh database: workspaces A and B, keys of each scope, a clock tests move.
type privacyBundle struct {
	*apiBundle
	clock atomic.Int64 // Unix nanoseconds of the service's now
}

func privacySetup(t *testing.T) *privacyBundle {
	t.Helper()
	ctx := context.Background()
	b := &privacyBundle{apiBundle: &apiBundle{bundle: setup(t), key: map[string]string{}, keyID: map[string]int64{}}}
	b.clock.Store(b.now.UnixNano())
	b.svc.Now = func() time.Time { return time.Unix(0, b.clock.Load()).UTC() }
	b.wsA, b.wsB = b.ensureWorkspace(t, "acme"), b.ensureWorkspace(t, "globex")
	for name, k := range map[string]struct {
		ws    int64
		scope string
	}{
		"privacy": {b.wsA, workspace.ScopePrivacy}, "admin": {b.wsA, workspace.ScopeAdmin},
		"contacts": {b.wsA, workspace.ScopeContactsWrite}, "send": {b.wsA, workspace.ScopeMessagesSend},
		"adminB": {b.wsB, workspace.ScopeAdmin}, "contactsB": {b.wsB, workspace.ScopeContactsWrite},
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
		(&contacts.Handler{DB: b.pool, Logger: logger}).Routes(r)
		h.Routes(r)
		h.PrivacyRoutes(r)
	})
	b.srv = httptest.NewServer(r)
	t.Cleanup(b.srv.Close)
	return b
}

func (b *privacyBundle) setNow(t time.Time) { b.clock.Store(t.UnixNano()) }

func (b *privacyBundle) nowTime() time.Time { return time.Unix(0, b.clock.Load()).UTC() }

// putContact creates a contact through the API with the named key and returns its id.
func (b *privacyBundle) putContact(t *testing.T, key, externalID, email, name string) int64 {
	t.Helper()
	res := b.call(t, http.MethodPut, "/v1/contacts/"+externalID, key, map[string]any{"email": email, "name": name})
	if res.Status != http.StatusCreated && res.Status != http.StatusOK {
		t.Fatalf("PUT contact: %d %s", res.Status, res.Raw)
	}
	var id int64
	ws := b.wsA
	if strings.HasSuffix(key, "B") {
		ws = b.wsB
	}
	if err := b.pool.QueryRow(context.Background(), `SELECT id FROM contacts WHERE workspace_id = $1 AND external_id = $2`,
		ws, externalID).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// postRequest records a request with the privacy key and returns its id.
func (b *privacyBundle) postRequest(t *testing.T, body map[string]any) int64 {
	t.Helper()
	res := b.call(t, http.MethodPost, "/v1/privacy-requests", "privacy", body)
	if res.Status != http.StatusCreated {
		t.Fatalf("POST privacy request %v: %d %s", body, res.Status, res.Raw)
	}
	return int64(res.Body["id"].(float64))
}

func TestPrivacyRequestLifecycle(t *testing.T) {
	t.Parallel()
	b := privacySetup(t)
	b.putContact(t, "contacts", "crm-1", "ada@example.com", "Ada Lovelace")
	received := b.now.Add(-48 * time.Hour)
	res := b.call(t, http.MethodPost, "/v1/privacy-requests", "privacy", map[string]any{"kind": "erase", "contact": "crm-1",
		"channel": "email", "note": "Asked by letter\r\nsigned", "received_at": received.Format(time.RFC3339)})
	if res.Status != http.StatusCreated {
		t.Fatalf("POST: %d %s", res.Status, res.Raw)
	}
	id := int64(res.Body["id"].(float64))
	if loc := res.Header.Get("Location"); loc != "/v1/privacy-requests/"+strconv.FormatInt(id, 10) {
		t.Errorf("Location = %q", loc)
	}
	actor := "api_key:" + strconv.FormatInt(b.keyID["privacy"], 10)
	due := received.Add(30 * 24 * time.Hour).Format(time.RFC3339)
	if res.Body["status"] != "received" || res.Body["kind"] != "erase" || res.Body["contact"] != "crm-1" ||
		res.Body["due_at"] != due || res.Body["received_at"] != received.Format(time.RFC3339) ||
		res.Body["handled_by"] != actor || res.Body["overdue"] != false || res.Body["completed_at"] != nil {
		t.Fatalf("created request = %s", res.Raw)
	}

	steps := []struct {
		name   string
		body   any
		status int
		want   string // the request's status afterwards
		field  string
	}{
		{"start", map[string]any{"status": "in_progress"}, 200, "in_progress", ""},
		{"same status again changes nothing", map[string]any{"status": "in_progress"}, 200, "in_progress", ""},
		{"back to received", map[string]any{"status": "received"}, 422, "in_progress", "status"},
		{"unknown status", map[string]any{"status": "done"}, 422, "in_progress", "status"},
		{"reject without a reason", map[string]any{"status": "rejected"}, 422, "in_progress", "note"},
		{"reject with a blank reason", map[string]any{"status": "rejected", "note": "  "}, 422, "in_progress", "note"},
		{"empty patch", map[string]any{}, 422, "in_progress", "status"},
		{"complete", map[string]any{"status": "completed"}, 200, "completed", ""},
		{"completed is final", map[string]any{"status": "rejected", "note": "changed our mind"}, 409, "completed", ""},
		{"a final request's note is final too", map[string]any{"note": "later"}, 409, "completed", ""},
		{"completing again changes nothing", map[string]any{"status": "completed"}, 200, "completed", ""},
	}
	for _, s := range steps {
		res := b.call(t, http.MethodPatch, "/v1/privacy-requests/"+strconv.FormatInt(id, 10), "privacy", s.body)
		if s.status != 200 {
			res.RequireProblem(t, s.status, s.field)
		} else if res.Status != 200 {
			t.Fatalf("%s: %d %s", s.name, res.Status, res.Raw)
		}
		got := b.call(t, http.MethodGet, "/v1/privacy-requests/"+strconv.FormatInt(id, 10), "privacy", nil)
		if got.Status != 200 || got.Body["status"] != s.want {
			t.Fatalf("%s: request is now %s", s.name, got.Raw)
		}
	}
	got := b.call(t, http.MethodGet, "/v1/privacy-requests/"+strconv.FormatInt(id, 10), "admin", nil)
	if got.Status != 200 || got.Body["completed_at"] != b.now.Format(time.RFC3339) || got.Body["handled_by"] != actor {
		t.Fatalf("completed request = %s", got.Raw)
	}
	// Audited: recorded, started, completed; no-op patches and refused ones wrote nothing.
	want := []string{"privacy_request.record", "privacy_request.update", "privacy_request.update"}
	rows, err := b.pool.Query(context.Background(), `SELECT action, actor, target, detail::text FROM audit_log
		WHERE workspace_id = $1 AND action LIKE 'privacy_request.%' ORDER BY id`, b.wsA)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	var action, who, target, detail string
	if _, err := pgx.ForEachRow(rows, []any{&action, &who, &target, &detail}, func() error {
		actions = append(actions, action)
		if who != actor || target != "privacy_request:"+strconv.FormatInt(id, 10) || strings.Contains(detail, "letter") {
			t.Errorf("audit entry %s %s %s %s", action, who, target, detail)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(actions, ",") != strings.Join(want, ",") {
		t.Fatalf("audit actions = %v, want %v", actions, want)
	}
}

// TestPrivacyRequestTransitions drives UpdatePrivacyRequest from each status to each status.
func TestPrivacyRequestTransitions(t *testing.T) {
	t.Parallel()
	b := privacySetup(t)
	ctx := context.Background()
	type outcome int
	const (
		ok outcome = iota
		noop
		finalErr
		invalid
	)
	for _, tc := range []struct {
		from, to string
		want     outcome
	}{
		{"received", "received", noop}, {"received", "in_progress", ok}, {"received", "completed", ok}, {"received", "rejected", ok},
		{"in_progress", "received", invalid}, {"in_progress", "in_progress", noop}, {"in_progress", "completed", ok}, {"in_progress", "rejected", ok},
		{"completed", "received", finalErr}, {"completed", "in_progress", finalErr}, {"completed", "completed", noop}, {"completed", "rejected", finalErr},
		{"rejected", "received", finalErr}, {"rejected", "in_progress", finalErr}, {"rejected", "completed", finalErr}, {"rejected", "rejected", noop},
		{"received", "archived", invalid},
	} {
		t.Run(tc.from+"->"+tc.to, func(t *testing.T) {
			err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
				r, err := b.svc.RecordPrivacyRequest(ctx, tx, consent.PrivacyRequest{WorkspaceID: b.wsA, Kind: consent.RequestAccess,
					Channel: consent.RequestChannelAPI}, "test")
				if err != nil {
					return err
				}
				note := "reason"
				if tc.from != "received" {
					from := tc.from
					if _, _, err := b.svc.UpdatePrivacyRequest(ctx, tx, b.wsA, r.ID, consent.RequestUpdate{Status: &from, Note: &note}, "test"); err != nil {
						return err
					}
				}
				to := tc.to
				u := consent.RequestUpdate{Status: &to}
				if to == consent.StatusRejected {
					u.Note = &note
				}
				got, changed, err := b.svc.UpdatePrivacyRequest(ctx, tx, b.wsA, r.ID, u, "staff")
				var fe *consent.FieldError
				switch tc.want {
				case ok:
					if err != nil || !changed || got.Status != tc.to || got.HandledBy != "staff" {
						t.Errorf("got %+v changed %v err %v", got, changed, err)
					}
					if (got.CompletedAt != nil) != (tc.to == "completed" || tc.to == "rejected") {
						t.Errorf("completed_at = %v", got.CompletedAt)
					}
				case noop:
					if err != nil || changed {
						t.Errorf("changed %v err %v, want no change", changed, err)
					}
				case finalErr:
					if !errors.Is(err, consent.ErrRequestFinal) {
						t.Errorf("err = %v, want ErrRequestFinal", err)
					}
				case invalid:
					if !errors.As(err, &fe) || fe.Field != "status" {
						t.Errorf("err = %v, want a status field error", err)
					}
				}
				return errRollback
			})
			if !errors.Is(err, errRollback) {
				t.Fatal(err)
			}
		})
	}
	// CompletePrivacyRequest: the function the export and erasure endpoints will call.
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		r, err := b.svc.RecordPrivacyRequest(ctx, tx, consent.PrivacyRequest{WorkspaceID: b.wsA, Kind: consent.RequestExport,
			Channel: consent.RequestChannelPreferenceCentre}, "recipient")
		if err != nil {
			return err
		}
		if _, err := b.svc.CompletePrivacyRequest(ctx, tx, b.wsB, r.ID, "worker"); !errors.Is(err, db.ErrNotFound) {
			return fmt.Errorf("completing through another workspace: %v", err)
		}
		done, err := b.svc.CompletePrivacyRequest(ctx, tx, b.wsA, r.ID, "worker")
		if err != nil || done.Status != consent.StatusCompleted || done.HandledBy != "worker" {
			return fmt.Errorf("complete: %+v %v", done, err)
		}
		if _, err := b.svc.CompletePrivacyRequest(ctx, tx, b.wsA, r.ID, "worker"); err != nil {
			return fmt.Errorf("complete twice: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

var errRollback = errors.New("rollback")

// TestPrivacyRequestsOverdue: the list puts open requests past their due date first, then the
// other open ones, both soonest due first, then the closed ones; paging keeps that order even
// when the clock moves; the gauge counts overdue open requests of every workspace.
func TestPrivacyRequestsOverdue(t *testing.T) {
	t.Parallel()
	b := privacySetup(t)
	now := b.now
	day := 24 * time.Hour
	// Received this many days before now: due 30 days after.
	mk := func(daysAgo int, kind string) int64 {
		return b.postRequest(t, map[string]any{"kind": kind, "received_at": now.Add(-time.Duration(daysAgo) * day).Format(time.RFC3339)})
	}
	overdue40 := mk(40, "access")   // due 10 days ago
	overdue31 := mk(31, "export")   // due 1 day ago
	open10 := mk(10, "erase")       // due in 20 days
	open29 := mk(29, "rectify")     // due in 1 day
	closedOld := mk(60, "restrict") // would be overdue, but closed
	closedNew := mk(5, "access")
	inProgressOverdue := mk(35, "erase") // due 5 days ago, in progress: still overdue
	for id, body := range map[int64]map[string]any{
		closedOld:         {"status": "rejected", "note": "identity not confirmed"},
		closedNew:         {"status": "completed"},
		inProgressOverdue: {"status": "in_progress"},
	} {
		if res := b.call(t, http.MethodPatch, "/v1/privacy-requests/"+strconv.FormatInt(id, 10), "privacy", body); res.Status != 200 {
			t.Fatalf("PATCH: %d %s", res.Status, res.Raw)
		}
	}
	// Workspace B's overdue request counts in the gauge but never appears in A's list.
	err := pgx.BeginFunc(context.Background(), b.pool, func(tx pgx.Tx) error {
		_, err := b.svc.RecordPrivacyRequest(context.Background(), tx, consent.PrivacyRequest{WorkspaceID: b.wsB,
			Kind: consent.RequestAccess, Channel: consent.RequestChannelEmail, ReceivedAt: now.Add(-100 * day)}, "test")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{overdue40, inProgressOverdue, overdue31, open29, open10, closedNew, closedOld}

	list := func(query string) (ids []int64, overdue []bool, next string) {
		res := b.call(t, http.MethodGet, "/v1/privacy-requests"+query, "privacy", nil)
		if res.Status != 200 {
			t.Fatalf("GET %s: %d %s", query, res.Status, res.Raw)
		}
		for _, r := range res.Body["privacy_requests"].([]any) {
			m := r.(map[string]any)
			ids = append(ids, int64(m["id"].(float64)))
			overdue = append(overdue, m["overdue"].(bool))
		}
		next, _ = res.Body["next_cursor"].(string)
		return ids, overdue, next
	}
	ids, overdue, next := list("")
	if fmt.Sprint(ids) != fmt.Sprint(want) || next != "" {
		t.Fatalf("order = %v (next %q), want %v", ids, next, want)
	}
	if fmt.Sprint(overdue) != "[true true true false false false false]" {
		t.Fatalf("overdue flags = %v", overdue)
	}
	// Page by 2; between pages 25 days pass (open10 falls overdue), which must not reorder pages.
	var paged []int64
	cursor := ""
	for page := 0; ; page++ {
		q := "?limit=2"
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		ids, _, next := list(q)
		paged = append(paged, ids...)
		b.setNow(now.Add(25 * day))
		if next == "" {
			break
		}
		cursor = next
		if page > 10 {
			t.Fatal("paging does not end")
		}
	}
	if fmt.Sprint(paged) != fmt.Sprint(want) {
		t.Fatalf("paged order = %v, want %v", paged, want)
	}
	// A fresh listing at the new time puts open10 (now 5 days overdue) among the overdue ones.
	ids, _, _ = list("")
	if fmt.Sprint(ids) != fmt.Sprint([]int64{overdue40, inProgressOverdue, overdue31, open29, open10, closedNew, closedOld}) {
		t.Fatalf("order 25 days later = %v", ids)
	}
	if ids, _, _ := list("?status=received&kind=erase"); fmt.Sprint(ids) != fmt.Sprint([]int64{open10}) {
		t.Fatalf("filtered = %v", ids)
	}

	// The gauge, on the same clock: A has 3 overdue and B 1 at the start; 25 days later open29
	// and open10 are overdue too.
	for _, tc := range []struct {
		at   time.Time
		want float64
	}{{now, 4}, {now.Add(25 * day), 6}, {now.Add(-200 * day), 0}} {
		c := consent.NewOverdueCollector(b.pool, nil, func() time.Time { return tc.at })
		if got := testutil.ToFloat64(c); got != tc.want {
			t.Errorf("overdue at %v = %v, want %v", tc.at, got, tc.want)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(consent.NewOverdueCollector(b.pool, nil, nil))
	if n, err := testutil.GatherAndCount(reg, "herald_privacy_requests_overdue"); err != nil || n != 1 {
		t.Fatalf("one series without labels: %d, %v", n, err)
	}
}

func TestPrivacyRequestsIsolation(t *testing.T) {
	t.Parallel()
	b := privacySetup(t)
	b.putContact(t, "contacts", "crm-a", "a@example.com", "")
	b.putContact(t, "contactsB", "crm-b", "b@example.com", "")
	id := b.postRequest(t, map[string]any{"kind": "access", "contact": "crm-a"})
	path := "/v1/privacy-requests/" + strconv.FormatInt(id, 10)
	b.call(t, http.MethodGet, path, "adminB", nil).RequireProblem(t, 404, "")
	b.call(t, http.MethodPatch, path, "adminB", map[string]any{"status": "completed"}).RequireProblem(t, 404, "")
	if res := b.call(t, http.MethodGet, "/v1/privacy-requests", "adminB", nil); res.Status != 200 ||
		len(res.Body["privacy_requests"].([]any)) != 0 {
		t.Fatalf("B's list: %s", res.Raw)
	}
	// A cannot name B's contact.
	b.call(t, http.MethodPost, "/v1/privacy-requests", "privacy", map[string]any{"kind": "access", "contact": "crm-b"}).
		RequireProblem(t, 422, "contact")
	// Nor can a Go caller attach A's request to B's contact: the foreign key is (workspace, contact).
	var contactB int64
	if err := b.pool.QueryRow(context.Background(), `SELECT id FROM contacts WHERE external_id = 'crm-b'`).Scan(&contactB); err != nil {
		t.Fatal(err)
	}
	err := pgx.BeginFunc(context.Background(), b.pool, func(tx pgx.Tx) error {
		_, err := b.svc.RecordPrivacyRequest(context.Background(), tx, consent.PrivacyRequest{WorkspaceID: b.wsA,
			ContactID: &contactB, Kind: consent.RequestAccess, Channel: consent.RequestChannelAPI}, "test")
		return err
	})
	var fe *consent.FieldError
	if !errors.As(err, &fe) || fe.Field != "contact" {
		t.Fatalf("request on another workspace's contact: %v", err)
	}
	// Scopes: privacy and admin may; contacts:write and messages:send may not; no key is 401.
	for key, status := range map[string]int{"contacts": 403, "send": 403, "": 401} {
		b.call(t, http.MethodGet, "/v1/privacy-requests", key, nil).RequireProblem(t, status, "")
		b.call(t, http.MethodGet, path, key, nil).RequireProblem(t, status, "")
	}
	if res := b.call(t, http.MethodGet, path, "admin", nil); res.Status != 200 {
		t.Fatalf("admin GET: %d", res.Status)
	}
}

func TestPrivacyRequestsHostile(t *testing.T) {
	t.Parallel()
	b := privacySetup(t)
	id := b.postRequest(t, map[string]any{"kind": "access"})
	idPath := "/v1/privacy-requests/" + strconv.FormatInt(id, 10)
	raw := make([]byte, 25)
	raw[8] = 9 // ranks are 0, 1 and 2
	badRankCursor := base64.RawURLEncoding.EncodeToString(raw)
	for _, tc := range []struct {
		name, method, path string
		body               any
		status             int
		field              string
	}{
		{"unknown kind", "POST", "/v1/privacy-requests", map[string]any{"kind": "delete_everything"}, 422, "kind"},
		{"no kind", "POST", "/v1/privacy-requests", map[string]any{"note": "x"}, 422, "kind"},
		{"kind with CRLF", "POST", "/v1/privacy-requests", map[string]any{"kind": "access\r\nX-Injected: 1"}, 422, "kind"},
		{"unknown channel", "POST", "/v1/privacy-requests", map[string]any{"kind": "access", "channel": "fax"}, 422, "channel"},
		{"unknown contact", "POST", "/v1/privacy-requests", map[string]any{"kind": "access", "contact": "nobody"}, 422, "contact"},
		{"contact with CRLF", "POST", "/v1/privacy-requests", map[string]any{"kind": "access", "contact": "a\r\nb"}, 422, "contact"},
		{"note with control characters", "POST", "/v1/privacy-requests", map[string]any{"kind": "access", "note": "a\x1b[2Jb"}, 422, "note"},
		{"note too long", "POST", "/v1/privacy-requests", map[string]any{"kind": "access", "note": strings.Repeat("é", 2001)}, 422, "note"},
		{"future received_at", "POST", "/v1/privacy-requests", map[string]any{"kind": "access", "received_at": b.now.Add(time.Hour).Format(time.RFC3339)}, 422, "received_at"},
		{"ancient received_at", "POST", "/v1/privacy-requests", map[string]any{"kind": "access", "received_at": "2001-01-01T00:00:00Z"}, 422, "received_at"},
		{"malformed received_at", "POST", "/v1/privacy-requests", map[string]any{"kind": "access", "received_at": "yesterday"}, 422, "received_at"},
		{"status on create", "POST", "/v1/privacy-requests", map[string]any{"kind": "access", "status": "completed"}, 422, "status"},
		{"unknown field", "POST", "/v1/privacy-requests", map[string]any{"kind": "access", "workspace_id": 2}, 422, "workspace_id"},
		{"oversized body", "POST", "/v1/privacy-requests", `{"kind":"access","note":"` + strings.Repeat("a", apiMaxBody) + `"}`, 413, ""},
		{"truncated body", "POST", "/v1/privacy-requests", `{"kind":"acc`, 400, ""},
		{"not JSON", "POST", "/v1/privacy-requests", `kind=access`, 400, ""},
		{"id zero", "GET", "/v1/privacy-requests/0", nil, 422, "id"},
		{"negative id", "GET", "/v1/privacy-requests/-1", nil, 422, "id"},
		{"id with a plus", "GET", "/v1/privacy-requests/+1", nil, 422, "id"},
		{"id with a leading zero", "GET", "/v1/privacy-requests/0" + strconv.FormatInt(id, 10), nil, 422, "id"},
		{"id not a number", "GET", "/v1/privacy-requests/abc", nil, 422, "id"},
		{"id too large", "GET", "/v1/privacy-requests/99999999999999999999", nil, 422, "id"},
		{"id with encoded CRLF", "GET", "/v1/privacy-requests/1%0d%0aX-A:%20b", nil, 422, "id"},
		{"missing id", "GET", "/v1/privacy-requests/999999", nil, 404, ""},
		{"patch of a missing id", "PATCH", "/v1/privacy-requests/999999", map[string]any{"status": "completed"}, 404, ""},
		{"patch with CRLF status", "PATCH", idPath, map[string]any{"status": "completed\r\n"}, 422, "status"},
		{"patch with a number status", "PATCH", idPath, `{"status":1}`, 422, "status"},
		{"patch oversized", "PATCH", idPath, `{"note":"` + strings.Repeat("a", apiMaxBody) + `"}`, 413, ""},
		{"unknown status filter", "GET", "/v1/privacy-requests?status=open", nil, 422, "status"},
		{"unknown kind filter", "GET", "/v1/privacy-requests?kind=x%0d%0a", nil, 422, "kind"},
		{"limit zero", "GET", "/v1/privacy-requests?limit=0", nil, 422, "limit"},
		{"limit too large", "GET", "/v1/privacy-requests?limit=1001", nil, 422, "limit"},
		{"garbage cursor", "GET", "/v1/privacy-requests?cursor=!!!", nil, 422, "cursor"},
		{"truncated cursor", "GET", "/v1/privacy-requests?cursor=AAAA", nil, 422, "cursor"},
		{"cursor with a bad rank", "GET", "/v1/privacy-requests?cursor=" + badRankCursor, nil, 422, "cursor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.call(t, tc.method, tc.path, "privacy", tc.body).RequireProblem(t, tc.status, tc.field)
		})
	}
	// Nothing was recorded beyond the first request, whose note is untouched.
	if n := b.count(t, `SELECT count(*) FROM privacy_requests`); n != 1 {
		t.Fatalf("%d requests recorded", n)
	}
	// A note may span lines.
	res := b.call(t, http.MethodPatch, idPath, "privacy", map[string]any{"note": "line one\r\nline two\n"})
	if res.Status != 200 || res.Body["note"] != "line one\r\nline two\n" {
		t.Fatalf("multi-line note: %d %s", res.Status, res.Raw)
	}
}
