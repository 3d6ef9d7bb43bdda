package campaigns_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"herald/campaigns"
)

func TestListsAPI(t *testing.T) {
	t.Parallel()
	b := audSetup(t)
	res := b.do(t, http.MethodPost, "/v1/lists", b.keyA, map[string]string{"name": "news", "description": "<script>alert(1)</script>"})
	if res.Status != http.StatusCreated || res.Body["member_count"] != float64(0) || res.Header.Get("Location") != "/v1/lists/news" {
		t.Fatalf("create: %d %s", res.Status, res.Raw)
	}
	if strings.Contains(string(res.Raw), "<script>") {
		t.Fatalf("description not escaped in JSON: %s", res.Raw)
	}
	b.do(t, http.MethodPost, "/v1/lists", b.keyA, map[string]string{"name": "news"}).RequireProblem(t, http.StatusConflict, "")
	// The same name in another workspace is another list.
	if res := b.do(t, http.MethodPost, "/v1/lists", b.keyB, map[string]string{"name": "news"}); res.Status != http.StatusCreated {
		t.Fatalf("B's list: %d %s", res.Status, res.Raw)
	}
	for _, bad := range []struct {
		body  any
		field string
		code  int
	}{
		{map[string]string{"name": "News"}, "name", 422},
		{map[string]string{"name": "a\r\nb"}, "name", 422},
		{map[string]string{"name": ""}, "name", 422},
		{map[string]string{"name": strings.Repeat("a", 64)}, "name", 422},
		{map[string]string{"name": "ok", "description": "line\r\nbreak"}, "description", 422},
		{map[string]string{"name": "ok", "description": strings.Repeat("é", 1001)}, "description", 422},
		{map[string]any{"name": "ok", "owner": 1}, "owner", 422},
		{`{"name":`, "", 400},
		{`[]`, "", 400},
	} {
		b.do(t, http.MethodPost, "/v1/lists", b.keyA, bad.body).RequireProblem(t, bad.code, bad.field)
	}
	b.do(t, http.MethodPost, "/v1/lists", b.keyAContact, map[string]string{"name": "x"}).RequireProblem(t, http.StatusForbidden, "")
	b.do(t, http.MethodGet, "/v1/lists", b.keyASend, nil).RequireProblem(t, http.StatusForbidden, "")

	for _, n := range []string{"l1", "l2", "l3"} {
		b.list(t, b.wsA, n)
	}
	var names []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		path := "/v1/lists?limit=3"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		res := b.do(t, http.MethodGet, path, b.keyA, nil)
		for _, l := range res.Body["lists"].([]any) {
			names = append(names, l.(map[string]any)["name"].(string))
		}
		next, _ := res.Body["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	if !slices.Equal(names, []string{"l1", "l2", "l3", "news"}) {
		t.Fatalf("pages: %v", names)
	}
	b.do(t, http.MethodGet, "/v1/lists?cursor=bWVtYmVyOjU", b.keyA, nil).RequireProblem(t, http.StatusUnprocessableEntity, "cursor") // a member cursor
	b.do(t, http.MethodGet, "/v1/lists?limit=1001", b.keyA, nil).RequireProblem(t, http.StatusUnprocessableEntity, "limit")

	// Another workspace's list is invisible: 404 on every route.
	b.list(t, b.wsB, "theirs")
	for _, r := range []struct{ method, path string }{
		{http.MethodGet, "/v1/lists/theirs"}, {http.MethodDelete, "/v1/lists/theirs"},
		{http.MethodGet, "/v1/lists/theirs/members"}, {http.MethodPost, "/v1/lists/theirs/members"},
		{http.MethodGet, "/v1/lists/Bad%0D%0AName"},
	} {
		var body any
		if r.method == http.MethodPost {
			body = map[string]any{"add": []string{"x"}}
		}
		b.do(t, r.method, r.path, b.keyA, body).RequireProblem(t, http.StatusNotFound, "")
	}
	b.upload(t, "/v1/lists/theirs/import", b.keyA, "text/csv", "external_id\nx\n").RequireProblem(t, http.StatusNotFound, "")

	if res := b.do(t, http.MethodDelete, "/v1/lists/l1", b.keyA, nil); res.Status != http.StatusNoContent {
		t.Fatalf("delete: %d", res.Status)
	}
	b.do(t, http.MethodGet, "/v1/lists/l1", b.keyA, nil).RequireProblem(t, http.StatusNotFound, "")
	if n := b.count(t, `SELECT count(*) FROM lists WHERE workspace_id = $1`, b.wsB); n != 2 {
		t.Fatalf("B has %d lists", n)
	}
}

func TestListMembersAPI(t *testing.T) {
	t.Parallel()
	b := audSetup(t)
	for i := range 5 {
		b.contact(t, b.wsA, fmt.Sprintf("a%d", i), fmt.Sprintf("a%d@example.com", i), nil)
	}
	b.contact(t, b.wsB, "b0", "b0@example.com", nil)
	b.list(t, b.wsA, "news")

	// contacts:write may maintain membership.
	res := b.do(t, http.MethodPost, "/v1/lists/news/members", b.keyAContact,
		map[string]any{"add": []string{"a0", "a1", "a2", "a2", "b0", "nobody", "'; DROP TABLE list_members; --"}})
	var ch campaigns.MembersChange
	if err := json.Unmarshal(res.Raw, &ch); err != nil || res.Status != http.StatusOK {
		t.Fatalf("add: %d %s", res.Status, res.Raw)
	}
	if ch.Added != 3 || ch.AlreadyMembers != 0 || !slices.Equal(ch.Unknown, []string{"'; DROP TABLE list_members; --", "b0", "nobody"}) {
		t.Fatalf("add: %s", res.Raw)
	}
	res = b.do(t, http.MethodPost, "/v1/lists/news/members", b.keyA, map[string]any{"add": []string{"a2", "a3"}, "remove": []string{"a0", "a4", "zz"}})
	if err := json.Unmarshal(res.Raw, &ch); err != nil || ch.Added != 1 || ch.AlreadyMembers != 1 || ch.Removed != 1 || ch.NotMembers != 1 ||
		!slices.Equal(ch.Unknown, []string{"zz"}) {
		t.Fatalf("add and remove: %s", res.Raw)
	}
	if got := b.members(t, b.wsA, "news"); !slices.Equal(got, []string{"a1", "a2", "a3"}) {
		t.Fatalf("members: %v", got)
	}
	if n := b.count(t, `SELECT count(*) FROM list_members WHERE workspace_id = $1`, b.wsB); n != 0 {
		t.Fatalf("B's contact joined A's list")
	}
	res = b.do(t, http.MethodGet, "/v1/lists/news", b.keyA, nil)
	if res.Body["member_count"] != float64(3) {
		t.Fatalf("get: %s", res.Raw)
	}

	// Refusals change nothing.
	tooMany := make([]string, 10_001)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("x%d", i)
	}
	for _, bad := range []struct {
		key   string
		body  any
		field string
		code  int
	}{
		{b.keyA, map[string]any{"add": tooMany}, "add", 422},
		{b.keyA, map[string]any{"add": []string{"a4"}, "remove": []string{"a4"}}, "remove", 422},
		{b.keyA, map[string]any{"add": "a4"}, "add", 422},
		{b.keyA, map[string]any{"add": []any{4}}, "add", 422},
		{b.keyA, map[string]any{"insert": []string{"a4"}}, "insert", 422},
		{b.keyASend, map[string]any{"add": []string{"a4"}}, "", 403},
		{"", map[string]any{"add": []string{"a4"}}, "", 401},
	} {
		b.do(t, http.MethodPost, "/v1/lists/news/members", bad.key, bad.body).RequireProblem(t, bad.code, bad.field)
	}
	small := audSetup(t, func(h *campaigns.AudienceHandler) { h.MaxBodyBytes = 1024 })
	small.list(t, small.wsA, "news")
	small.do(t, http.MethodPost, "/v1/lists/news/members", small.keyA, map[string]any{"add": tooMany[:500]}).
		RequireProblem(t, http.StatusRequestEntityTooLarge, "")
	if got := b.members(t, b.wsA, "news"); !slices.Equal(got, []string{"a1", "a2", "a3"}) {
		t.Fatalf("members after refusals: %v", got)
	}

	// Members by cursor, in contact order.
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		path := "/v1/lists/news/members?limit=2"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		res := b.do(t, http.MethodGet, path, b.keyAContact, nil)
		if res.Status != http.StatusOK {
			t.Fatalf("members page: %d %s", res.Status, res.Raw)
		}
		for _, m := range res.Body["members"].([]any) {
			got = append(got, m.(map[string]any)["external_id"].(string))
		}
		next, _ := res.Body["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	if !slices.Equal(got, []string{"a1", "a2", "a3"}) {
		t.Fatalf("member pages: %v", got)
	}
	b.do(t, http.MethodGet, "/v1/lists/news/members?cursor=bGlzdDp4", b.keyA, nil).RequireProblem(t, http.StatusUnprocessableEntity, "cursor") // a list cursor

	// Deleting a contact or the list removes the memberships.
	if _, err := b.pool.Exec(b.ctx, `DELETE FROM contacts WHERE workspace_id = $1 AND external_id = 'a1'`, b.wsA); err != nil {
		t.Fatal(err)
	}
	if got := b.members(t, b.wsA, "news"); !slices.Equal(got, []string{"a2", "a3"}) {
		t.Fatalf("after a contact's deletion: %v", got)
	}
	b.do(t, http.MethodDelete, "/v1/lists/news", b.keyA, nil)
	if n := b.count(t, `SELECT count(*) FROM list_members`); n != 0 {
		t.Fatalf("%d memberships outlive the list", n)
	}
	// The database itself refuses a membership across workspaces.
	b.list(t, b.wsA, "again")
	_, err := b.pool.Exec(b.ctx, `INSERT INTO list_members (workspace_id, list_id, contact_id)
		SELECT $1, l.id, c.id FROM lists l, contacts c WHERE l.name = 'again' AND c.external_id = 'b0'`, b.wsA)
	if err == nil {
		t.Fatal("a membership across workspaces was stored")
	}
}

func TestListImport(t *testing.T) {
	t.Parallel()
	b := audSetup(t)
	for i := range 6 {
		b.contact(t, b.wsA, fmt.Sprintf("a%d", i), fmt.Sprintf("a%d@example.com", i), nil)
	}
	b.contact(t, b.wsB, "b0", "b0@example.com", nil)
	b.list(t, b.wsA, "news", b.contact(t, b.wsA, "old", "old@example.com", nil))

	csv := "\ufeffEmail,External_ID,plan\r\n" +
		"x@example.com,a0,pro\n" + // 2 added
		"y,a1\n" + // 3 added (short record, other columns ignored)
		"z,a0,x\n" + // 4 duplicate of row 2
		"q,b0\n" + // 5 unknown: B's contact
		"q,nobody\n" + // 6 unknown
		"q,\n" + // 7 invalid: empty
		"q, a2\n" + // 8 invalid: surrounding space
		"q\n" + // 9 invalid: no such column
		"q,\"a\"3\"\n" + // 10 invalid: bare quote
		"q,old\n" + // 11 already a member
		"q,<script>\n" // 12 unknown, echoed nowhere
	res := b.upload(t, "/v1/lists/news/import", b.keyAContact, "text/csv; charset=utf-8", csv)
	var r campaigns.ListImportReport
	if err := json.Unmarshal(res.Raw, &r); err != nil || res.Status != http.StatusOK {
		t.Fatalf("CSV: %d %s", res.Status, res.Raw)
	}
	rows := func(r campaigns.ListImportReport) []int {
		var out []int
		for _, e := range r.Errors {
			out = append(out, e.Row)
		}
		return out
	}
	if r.Received != 11 || r.Added != 2 || r.Duplicates != 1 || r.Unknown != 3 || r.Invalid != 4 || r.AlreadyMembers != 1 ||
		!slices.Equal(rows(r), []int{5, 6, 7, 8, 9, 10, 12}) {
		t.Fatalf("CSV report: %s", res.Raw)
	}
	if got := b.members(t, b.wsA, "news"); !slices.Equal(got, []string{"a0", "a1", "old"}) {
		t.Fatalf("after CSV: %v", got)
	}

	nd := `{"external_id":"a2","email":"ignored@example.com"}` + "\n" +
		"\n" +
		`{"external_id":"a3"}` + "\n" +
		`{"external_id":5}` + "\n" +
		`{"id":"a4"}` + "\n" +
		`["a4"]` + "\n" +
		`{"external_id":"a4"}{"external_id":"a5"}` + "\n" +
		`{"external_id":"a\r\nb"}` + "\n" +
		`{"name":"` + strings.Repeat("y", 1<<20) + `"}` + "\n" +
		`{"external_id":"a2"}`
	res = b.upload(t, "/v1/lists/news/import", b.keyA, "application/x-ndjson", nd)
	if err := json.Unmarshal(res.Raw, &r); err != nil || res.Status != http.StatusOK {
		t.Fatalf("NDJSON: %d %s", res.Status, res.Raw)
	}
	if r.Received != 9 || r.Added != 2 || r.Duplicates != 1 || r.Invalid != 6 || r.Unknown != 0 ||
		!slices.Equal(rows(r), []int{4, 5, 6, 7, 8, 9}) {
		t.Fatalf("NDJSON report: %s", res.Raw)
	}
	if got := b.members(t, b.wsA, "news"); !slices.Equal(got, []string{"a0", "a1", "a2", "a3", "old"}) {
		t.Fatalf("after NDJSON: %v", got)
	}

	// Refused uploads add nothing.
	small := audSetup(t, func(h *campaigns.AudienceHandler) { h.MaxImportBytes = 2048 })
	small.contact(t, small.wsA, "a0", "a0@example.com", nil)
	small.list(t, small.wsA, "news")
	big := "external_id\na0\n" + strings.Repeat("nobody\n", 400)
	for _, tc := range []struct {
		ctype, body string
		code        int
	}{
		{"text/csv", big, 413},
		{"application/x-ndjson", `{"external_id":"a0"}` + "\n" + strings.Repeat(`{"external_id":"nobody"}`+"\n", 100), 413},
		{"text/csv", "", 422},
		{"text/csv", "email\na0\n", 422},
		{"text/csv", "external_id,External_Id\na0,a0\n", 422},
		{"text/csv", "external_id\na0\nx,\"" + strings.Repeat("y", 3000), 413},
		{"application/json", `{"external_id":"a0"}`, 415},
		{"text/csv; charset=latin1", "external_id\na0\n", 415},
		{"", "external_id\na0\n", 415},
	} {
		small.upload(t, "/v1/lists/news/import", small.keyA, tc.ctype, tc.body).RequireProblem(t, tc.code, "")
	}
	// A record over 1 MiB (an unclosed quote) fails the whole import.
	b.list(t, b.wsA, "other")
	b.upload(t, "/v1/lists/other/import", b.keyA, "text/csv", "external_id\na0\n\""+strings.Repeat("y", 1<<20+16<<10)).
		RequireProblem(t, http.StatusUnprocessableEntity, "")
	b.upload(t, "/v1/lists/other/import", b.keyASend, "text/csv", "external_id\na0\n").RequireProblem(t, http.StatusForbidden, "")
	if n := small.count(t, `SELECT count(*) FROM list_members`); n != 0 {
		t.Fatalf("refused imports added %d members", n)
	}
	if got := b.members(t, b.wsA, "other"); len(got) != 0 {
		t.Fatalf("refused import added %v", got)
	}
}
