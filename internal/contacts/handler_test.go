package contacts_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"herald/internal/contacts"
	"herald/internal/db"
	"herald/internal/httpx"
)

func decodeContact(tb testing.TB, body []byte) contacts.Contact {
	tb.Helper()
	var c contacts.Contact
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&c); err != nil {
		tb.Fatalf("decode contact %s: %v", body, err)
	}
	return c
}

func TestPutGet(t *testing.T) {
	t.Parallel()
	b := setup(t)

	resp := b.putJSON(t, b.keyA, "crm-1", map[string]any{
		"email": "Ann@Example.COM", "name": " Ann Example ", "locale": "pt_br", "timezone": "Europe/Berlin",
		"attributes": json.RawMessage(`{"plan":"pro","seats":12,"big":12345678901234567890,"nested":{"a":[1,"x"]}}`),
	})
	if resp.Status != http.StatusCreated || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("first PUT: %d %s", resp.Status, resp.Raw)
	}
	created := decodeContact(t, resp.Raw)
	if created.ExternalID != "crm-1" || created.Email != "Ann@example.com" || created.Name != "Ann Example" ||
		created.Locale != "pt-BR" || created.Timezone != "Europe/Berlin" || created.CreatedAt.IsZero() {
		t.Fatalf("created contact = %+v", created)
	}
	if !bytes.Contains(resp.Raw, []byte(`"big":12345678901234567890`)) || bytes.Contains(resp.Raw, []byte(`"id"`)) {
		t.Fatalf("attributes lost precision or the internal id leaked: %s", resp.Raw)
	}

	resp = b.putJSON(t, b.keyA, "crm-1", map[string]any{"email": "ann@new.example", "attributes": nil})
	if resp.Status != http.StatusOK {
		t.Fatalf("second PUT: %d %s", resp.Status, resp.Raw)
	}
	updated := decodeContact(t, resp.Raw)
	if updated.Email != "ann@new.example" || updated.Name != "" || len(updated.Attributes) != 0 ||
		!updated.CreatedAt.Equal(created.CreatedAt) || updated.UpdatedAt.Before(created.UpdatedAt) {
		t.Fatalf("PUT must replace the contact: %+v", updated)
	}

	resp = b.do(t, http.MethodGet, "/v1/contacts/crm-1", b.keyA, "", nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("GET: %d %s", resp.Status, resp.Raw)
	}
	if got := decodeContact(t, resp.Raw); got.Email != "ann@new.example" || got.ExternalID != "crm-1" {
		t.Fatalf("GET = %+v", got)
	}

	resp = b.do(t, http.MethodGet, "/v1/contacts/nobody", b.keyA, "", nil)
	resp.RequireProblem(t, http.StatusNotFound, "")

	// An encoded "/" belongs to the id.
	resp = b.putJSON(t, b.keyA, "crm%2F42", map[string]any{"email": "slash@example.com"})
	if resp.Status != http.StatusCreated {
		t.Fatalf("PUT crm%%2F42: %d %s", resp.Status, resp.Raw)
	}
	c, err := contacts.Get(b.ctx, b.pool, b.wsA, "crm/42")
	if err != nil || c.Email != "slash@example.com" {
		t.Fatalf("Get(crm/42) = %+v, %v", c, err)
	}
	if _, err := contacts.Get(b.ctx, b.pool, b.wsA, "nobody"); !errors.Is(err, db.ErrNotFound) {
		t.Fatalf("Get(nobody) error = %v, want db.ErrNotFound", err)
	}
	if n := b.contactCount(t, b.wsA); n != 2 {
		t.Fatalf("workspace A has %d contacts, want 2", n)
	}
}

func TestCrossWorkspace(t *testing.T) {
	t.Parallel()
	b := setup(t)

	if resp := b.putJSON(t, b.keyA, "shared", map[string]any{"email": "a@a.example", "name": "A's"}); resp.Status != http.StatusCreated {
		t.Fatalf("A PUT: %d %s", resp.Status, resp.Raw)
	}
	resp := b.do(t, http.MethodGet, "/v1/contacts/shared", b.keyB, "", nil)
	resp.RequireProblem(t, http.StatusNotFound, "")

	resp = b.putJSON(t, b.keyB, "shared", map[string]any{"email": "b@b.example", "name": "B's"})
	if resp.Status != http.StatusCreated {
		t.Fatalf("B's PUT of the same external id must create B's own contact: %d %s", resp.Status, resp.Raw)
	}

	rows, err := b.pool.Query(b.ctx, `SELECT workspace_id, email, name FROM contacts WHERE external_id = 'shared' ORDER BY workspace_id`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var ws int64
		var email, name string
		if err := rows.Scan(&ws, &email, &name); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d:%s:%s", ws, email, name))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{fmt.Sprintf("%d:a@a.example:A's", b.wsA), fmt.Sprintf("%d:b@b.example:B's", b.wsB)}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("rows = %v, want %v", got, want)
	}
	resp = b.do(t, http.MethodGet, "/v1/contacts/shared", b.keyA, "", nil)
	if c := decodeContact(t, resp.Raw); resp.Status != http.StatusOK || c.Email != "a@a.example" {
		t.Fatalf("A's contact changed: %d %s", resp.Status, resp.Raw)
	}
}

func TestPutHostile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	manyKeys := map[string]int{}
	for i := range 101 {
		manyKeys[fmt.Sprintf("k%d", i)] = i
	}
	manyKeysJSON, _ := json.Marshal(map[string]any{"email": "a@b.example", "attributes": manyKeys})
	bigAttr, _ := json.Marshal(map[string]any{"email": "a@b.example", "attributes": map[string]string{"x": strings.Repeat("y", 65<<10)}})
	const json = "application/json"

	for _, tc := range []struct {
		name   string
		key    string // "" sends no Authorization header
		id     string
		ctype  string
		body   string
		status int
		field  string
	}{
		{"malformed JSON", b.keyA, "h1", json, `{"email" "a@b.example"}`, 400, ""},
		{"truncated JSON", b.keyA, "h1", json, `{"email":`, 400, ""},
		{"empty body", b.keyA, "h1", json, ``, 400, ""},
		{"trailing data", b.keyA, "h1", json, `{"email":"a@b.example"} {}`, 400, ""},
		{"array body", b.keyA, "h1", json, `[{"email":"a@b.example"}]`, 400, ""},
		{"unknown field", b.keyA, "h1", json, `{"email":"a@b.example","external_id":"other"}`, 422, "external_id"},
		{"unknown field admin", b.keyA, "h1", json, `{"email":"a@b.example","admin":true}`, 422, "admin"},
		{"missing email", b.keyA, "h1", json, `{"name":"x"}`, 422, "email"},
		{"email not a string", b.keyA, "h1", json, `{"email":42}`, 422, "email"},
		{"email with CRLF", b.keyA, "h1", json, `{"email":"a@b.example\r\nBcc: x@y.example"}`, 422, "email"},
		{"email with display name", b.keyA, "h1", json, `{"email":"A <a@b.example>"}`, 422, "email"},
		{"name with CRLF", b.keyA, "h1", json, `{"email":"a@b.example","name":"A\r\nBcc: x@y.example"}`, 422, "name"},
		{"name with NUL", b.keyA, "h1", json, `{"email":"a@b.example","name":"A\u0000"}`, 422, "name"},
		{"name too long", b.keyA, "h1", json, `{"email":"a@b.example","name":"` + strings.Repeat("n", 257) + `"}`, 422, "name"},
		{"bad locale", b.keyA, "h1", json, `{"email":"a@b.example","locale":"not a locale"}`, 422, "locale"},
		{"timezone Local", b.keyA, "h1", json, `{"email":"a@b.example","timezone":"Local"}`, 422, "timezone"},
		{"unknown timezone", b.keyA, "h1", json, `{"email":"a@b.example","timezone":"Mars/Olympus_Mons"}`, 422, "timezone"},
		{"timezone path", b.keyA, "h1", json, `{"email":"a@b.example","timezone":"../../etc/passwd"}`, 422, "timezone"},
		{"attributes array", b.keyA, "h1", json, `{"email":"a@b.example","attributes":[1,2]}`, 422, "attributes"},
		{"attributes scalar", b.keyA, "h1", json, `{"email":"a@b.example","attributes":"x"}`, 422, "attributes"},
		{"attributes with NUL", b.keyA, "h1", json, `{"email":"a@b.example","attributes":{"a":"\u0000"}}`, 422, "attributes"},
		{"attributes huge number", b.keyA, "h1", json, `{"email":"a@b.example","attributes":{"a":1e999}}`, 422, "attributes"},
		{"attributes 101 keys", b.keyA, "h1", json, string(manyKeysJSON), 422, "attributes"},
		{"attributes over 64 KiB", b.keyA, "h1", json, string(bigAttr), 422, "attributes"},
		{"external_id too long", b.keyA, strings.Repeat("x", 256), json, `{"email":"a@b.example"}`, 422, "external_id"},
		{"external_id with LF", b.keyA, "a%0Ab", json, `{"email":"a@b.example"}`, 422, "external_id"},
		{"external_id with NUL", b.keyA, "a%00b", json, `{"email":"a@b.example"}`, 422, "external_id"},
		{"external_id with spaces", b.keyA, "%20a", json, `{"email":"a@b.example"}`, 422, "external_id"},
		{"wrong content type", b.keyA, "h1", "text/plain", `{"email":"a@b.example"}`, 415, ""},
		{"2 MiB body", b.keyA, "h1", json, `{"email":"a@b.example","name":"` + strings.Repeat("n", 2<<20) + `"}`, 413, ""},
		{"missing key", "", "h1", json, `{"email":"a@b.example"}`, 401, ""},
		{"wrong scope", b.keyASend, "h1", json, `{"email":"a@b.example"}`, 403, ""},
		{"forged key", "hrld_" + strings.Repeat("A", 43), "h1", json, `{"email":"a@b.example"}`, 401, ""},
		{"not a herald key", "secret", "h1", json, `{"email":"a@b.example"}`, 401, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := b.do(t, http.MethodPut, "/v1/contacts/"+tc.id, tc.key, tc.ctype, strings.NewReader(tc.body))
			p := resp.RequireProblem(t, tc.status, tc.field)
			if strings.Contains(p.Detail, "a@b.example") || strings.Contains(p.Detail, "Bcc") {
				t.Fatalf("the problem echoes the input: %s", resp.Raw)
			}
		})
	}
	if n := b.contactCount(t, b.wsA) + b.contactCount(t, b.wsB); n != 0 {
		t.Fatalf("hostile requests wrote %d contacts", n)
	}
	// GET is guarded the same way.
	resp := b.do(t, http.MethodGet, "/v1/contacts/h1", b.keyASend, "", nil)
	resp.RequireProblem(t, http.StatusForbidden, "")
	resp = b.do(t, http.MethodGet, "/v1/contacts/h1", "", "", nil)
	resp.RequireProblem(t, http.StatusUnauthorized, "")
}

func TestUpsertDirect(t *testing.T) {
	t.Parallel()
	b := setup(t)
	in := contacts.Input{ExternalID: "go-1", Email: "Go@Example.com",
		Attributes: map[string]any{"n": 3, "when": "2026-01-02", "list": []int{1, 2}}}
	c, created, err := contacts.Upsert(b.ctx, b.pool, b.wsA, in)
	if err != nil || !created || c.Email != "Go@example.com" || c.Attributes["n"] != json.Number("3") {
		t.Fatalf("Upsert = %+v, %v, %v", c, created, err)
	}
	if _, created, err = contacts.Upsert(b.ctx, b.pool, b.wsA, in); err != nil || created {
		t.Fatalf("second Upsert: created %v, %v", created, err)
	}
	// Go values that encode to something jsonb refuses are caught before the database sees them.
	in.Attributes = map[string]any{"s": struct{ A string }{"\x00"}}
	var p *httpx.Problem
	if _, _, err := contacts.Upsert(b.ctx, b.pool, b.wsA, in); !errors.As(err, &p) || p.Field != "attributes" {
		t.Fatalf("Upsert with NUL attribute: %v", err)
	}
	// "import" is a valid id for GET and PUT; only POST is the import.
	resp := b.do(t, http.MethodGet, "/v1/contacts/import", b.keyA, "", nil)
	resp.RequireProblem(t, http.StatusNotFound, "")
}
