package contacts_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"herald/internal/apitest"
	"herald/internal/contacts"
)

// importBody posts body as an import of contentType with key and decodes the report.
func (b *bundle) importBody(tb testing.TB, key, contentType, body string) contacts.ImportReport {
	tb.Helper()
	resp := b.do(tb, http.MethodPost, "/v1/contacts/import", key, contentType, strings.NewReader(body))
	if resp.Status != http.StatusOK {
		tb.Fatalf("import: %d %s", resp.Status, resp.Raw)
	}
	var r contacts.ImportReport
	if err := json.Unmarshal(resp.Raw, &r); err != nil {
		tb.Fatalf("import report %s: %v", resp.Raw, err)
	}
	return r
}

// stored returns the workspace's contacts as "external_id email name attributes", by external_id.
func (b *bundle) stored(tb testing.TB, ws int64) map[string]string {
	tb.Helper()
	rows, err := b.pool.Query(b.ctx, `SELECT external_id, email, name, locale, timezone, attributes::text FROM contacts WHERE workspace_id = $1`, ws)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, email, name, locale, tz, attrs string
		if err := rows.Scan(&id, &email, &name, &locale, &tz, &attrs); err != nil {
			tb.Fatal(err)
		}
		out[id] = strings.Join([]string{email, name, locale, tz, attrs}, "|")
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// rowErrors lists a report's errors as "row:field".
func rowErrors(r contacts.ImportReport) []string {
	var out []string
	for _, e := range r.Errors {
		out = append(out, fmt.Sprintf("%d:%s", e.Row, e.Field))
	}
	return out
}

func requireReport(tb testing.TB, got contacts.ImportReport, received, created, updated, duplicates, invalid int, errs []string) {
	tb.Helper()
	if got.Received != received || got.Created != created || got.Updated != updated ||
		got.Duplicates != duplicates || got.Invalid != invalid {
		tb.Fatalf("report = %+v; want received %d created %d updated %d duplicates %d invalid %d",
			got, received, created, updated, duplicates, invalid)
	}
	if e := rowErrors(got); !reflect.DeepEqual(e, errs) {
		tb.Fatalf("row errors = %v, want %v (%+v)", e, errs, got.Errors)
	}
}

func TestImportCSV(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if resp := b.putJSON(t, b.keyA, "exist", map[string]any{"email": "old@example.com", "name": "Old"}); resp.Status != http.StatusCreated {
		t.Fatalf("PUT: %d %s", resp.Status, resp.Raw)
	}
	// Records are numbered as a spreadsheet shows them: the header is 1.
	csv := "\ufeffExternal_ID,email,name,locale,timezone,plan,attributes\r\n" +
		`c1,one@example.com,One,en,Europe/Berlin,pro,"{""seats"":3}"` + "\r\n" + // 2
		"c2,not-an-address,Two,,,,\r\n" + // 3: email
		"exist,new@EXAMPLE.com,Existing,,,,\r\n" + // 4: updates
		"c3,three@example.com,\"Three\r\nBcc: x@y.example\",,,,\r\n" + // 5: name
		"c1,one-again@example.com,One Again,,,basic,\r\n" + // 6: duplicate, wins
		"c4,four@example.com,,not a locale,,,\r\n" + // 7: locale
		"c5,five@example.com,,,Mars/Base,,\r\n" + // 8: timezone
		"\r\n" + // skipped, not a record
		",seven@example.com,,,,,\r\n" + // 9: external_id
		"c8,eight@example.com,,,,,[1]\r\n" + // 10: attributes
		"c9,nine@example.com\r\n" + // 11: wrong field count
		"c10,ten@example.com,,,,,\r\n" + // 12
		"c11,\"bad\"quote@example.com,,,,,\r\n" + // 13: malformed record
		"c12,twelve@example.com,,,,,\"{\"\"a\"\":\"\"\x00\"\"}\"\r\n" // 14: NUL in attributes
	r := b.importBody(t, b.keyA, "text/csv; charset=utf-8", csv)
	requireReport(t, r, 13, 2, 1, 1, 9,
		[]string{"3:email", "5:name", "7:locale", "8:timezone", "9:external_id", "10:attributes", "11:", "13:", "14:attributes"})

	want := map[string]string{
		"c1":    `one-again@example.com|One Again|||{"plan": "basic"}`,
		"exist": `new@example.com|Existing|||{}`,
		"c10":   `ten@example.com||||{}`,
	}
	if got := b.stored(t, b.wsA); !reflect.DeepEqual(got, want) {
		t.Fatalf("stored = %v\nwant %v", got, want)
	}

	// JSON and attribute columns merge, the columns winning; locale and timezone are stored normalised.
	r = b.importBody(t, b.keyA, "text/csv", "email,external_id,attributes,plan,locale,timezone\n"+
		`c1@example.com,c1,"{""plan"":""x"",""n"":1}",gold,EN-gb,America/New_York`)
	requireReport(t, r, 1, 0, 1, 0, 0, nil)
	// An import replaces the whole contact, like PUT: the name column is absent, so the name is now empty.
	if got := b.stored(t, b.wsA)["c1"]; got != `c1@example.com||en-GB|America/New_York|{"n": 1, "plan": "gold"}` {
		t.Fatalf("c1 = %s", got)
	}
}

func TestImportNDJSON(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if resp := b.putJSON(t, b.keyA, "exist", map[string]any{"email": "old@example.com"}); resp.Status != http.StatusCreated {
		t.Fatalf("PUT: %d %s", resp.Status, resp.Raw)
	}
	nd := strings.Join([]string{
		`{"external_id":"n1","email":"n1@example.com","attributes":{"score":1.5,"tags":["a","b"]}}`, // 1
		`{"external_id":"n2","email":"n2@example.com","bogus":1}`,                                   // 2: unknown field
		`not json`, // 3
		``,         // 4: blank, skipped
		`{"external_id":"n3","email":"n3@example.com","name":"N\r\nBcc: x@y.example"}`, // 5: name
		`{"external_id":"n1","email":"n1b@example.com","name":"Later"}`,                // 6: duplicate, wins
		`  {"external_id":"exist","email":"upd@example.com"}  `,                        // 7: updates
		`{"external_id":"n4","email":"n4@example.com","attributes":"x"}`,               // 8: attributes
		`{"external_id":"n5","email":42}`,                                              // 9: email
		`{"external_id":"n6","email":"n6@example.com"} {}`,                             // 10: trailing data
		`[1,2]`, // 11
		`{"external_id":"n7","email":"n7@example.com","timezone":"America/New_York","locale":"pt-BR"}`, // 12
		`{"external_id":"n8","email":"n8@example.com"`,                                                 // 13: truncated, no final newline
	}, "\n")
	r := b.importBody(t, b.keyA, "application/x-ndjson", nd)
	requireReport(t, r, 12, 2, 1, 1, 8, []string{"2:bogus", "3:", "5:name", "8:attributes", "9:email", "10:", "11:", "13:"})
	want := map[string]string{
		"n1":    `n1b@example.com|Later|||{}`,
		"exist": `upd@example.com||||{}`,
		"n7":    `n7@example.com||pt-BR|America/New_York|{}`,
	}
	if got := b.stored(t, b.wsA); !reflect.DeepEqual(got, want) {
		t.Fatalf("stored = %v\nwant %v", got, want)
	}
}

func TestImportWorkspaceIsolation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if resp := b.putJSON(t, b.keyA, "shared", map[string]any{"email": "a@a.example"}); resp.Status != http.StatusCreated {
		t.Fatalf("PUT: %d %s", resp.Status, resp.Raw)
	}
	before := b.stored(t, b.wsA)
	r := b.importBody(t, b.keyB, "application/x-ndjson",
		`{"external_id":"shared","email":"b@b.example"}`+"\n"+`{"external_id":"b-only","email":"b2@b.example"}`+"\n")
	requireReport(t, r, 2, 2, 0, 0, 0, nil)
	r = b.importBody(t, b.keyB, "text/csv", "external_id,email\nshared,b3@b.example\n")
	requireReport(t, r, 1, 0, 1, 0, 0, nil)
	if after := b.stored(t, b.wsA); !reflect.DeepEqual(after, before) {
		t.Fatalf("B's import changed A: %v -> %v", before, after)
	}
	if got := b.stored(t, b.wsB); got["shared"] != "b3@b.example||||{}" || len(got) != 2 {
		t.Fatalf("B = %v", got)
	}
}

func TestImportRejected(t *testing.T) {
	t.Parallel()
	b := setup(t, func(h *contacts.Handler) { h.MaxImportBytes = 4096 })
	var big strings.Builder
	for i := range 200 {
		fmt.Fprintf(&big, `{"external_id":"r%d","email":"r%d@example.com"}`+"\n", i, i)
	}
	bigCSV := "external_id,email\n" + strings.Repeat("x,x@example.com\n", 400)
	unclosed := "external_id,email\nx,\"" + strings.Repeat("y", 4000)
	for _, tc := range []struct {
		name   string
		key    string
		ctype  string
		body   string
		status int
	}{
		{"JSON", b.keyA, "application/json", `{"external_id":"a","email":"a@example.com"}`, 415},
		{"no content type", b.keyA, "", "external_id,email\na,a@example.com\n", 415},
		{"plain text", b.keyA, "text/plain", "external_id,email\na,a@example.com\n", 415},
		{"latin1 CSV", b.keyA, "text/csv; charset=iso-8859-1", "external_id,email\na,a@example.com\n", 415},
		{"NDJSON over the limit", b.keyA, "application/x-ndjson", big.String(), 413},
		{"CSV over the limit", b.keyA, "text/csv", bigCSV, 413},
		{"unclosed quote over the limit", b.keyA, "text/csv", unclosed + strings.Repeat("z", 1000), 413},
		{"CSV without email column", b.keyA, "text/csv", "external_id,mail\na,a@example.com\n", 422},
		{"CSV without header", b.keyA, "text/csv", "", 422},
		{"CSV header repeated column", b.keyA, "text/csv", "external_id,email,Email\na,a@example.com,b@example.com\n", 422},
		{"CSV header bare quote", b.keyA, "text/csv", "external_id,em\"ail\na,a@example.com\n", 422},
		{"wrong scope", b.keyASend, "text/csv", "external_id,email\na,a@example.com\n", 403},
		{"no key", "", "text/csv", "external_id,email\na,a@example.com\n", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := b.do(t, http.MethodPost, "/v1/contacts/import", tc.key, tc.ctype, strings.NewReader(tc.body))
			resp.RequireProblem(t, tc.status, "")
		})
	}
	resp := apitest.Do(t, b.srv, apitest.Request{Method: http.MethodPost, Path: "/v1/contacts/import", Key: b.keyA,
		ContentType: "text/csv", Header: http.Header{"Content-Encoding": {"gzip"}}, Body: strings.NewReader("x")})
	if resp.Status != http.StatusUnsupportedMediaType {
		t.Fatalf("gzip upload: %d, want 415", resp.Status)
	}
	if n := b.contactCount(t, b.wsA); n != 0 {
		t.Fatalf("rejected imports applied %d contacts", n)
	}
}

func TestImportRecordTooLarge(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// A valid row first: the failed import must not apply it.
	body := "external_id,email\nok,ok@example.com\nx,\"" + strings.Repeat("y", 1<<20+16<<10)
	resp := b.do(t, http.MethodPost, "/v1/contacts/import", b.keyA, "text/csv", strings.NewReader(body))
	resp.RequireProblem(t, http.StatusUnprocessableEntity, "")
	// An over-long NDJSON line is one invalid row.
	nd := `{"external_id":"ok","email":"ok@example.com"}` + "\n" + `{"name":"` + strings.Repeat("y", 1<<20+1) + `"}` + "\n"
	r := b.importBody(t, b.keyA, "application/x-ndjson", nd)
	requireReport(t, r, 2, 1, 0, 0, 1, []string{"2:"})
}

func TestImportErrorListCapped(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var nd strings.Builder
	for i := range 1500 {
		fmt.Fprintf(&nd, `{"external_id":"e%d","email":"bad"}`+"\n", i)
	}
	nd.WriteString(`{"external_id":"good","email":"good@example.com"}`)
	r := b.importBody(t, b.keyA, "application/x-ndjson", nd.String())
	if r.Received != 1501 || r.Invalid != 1500 || r.Created != 1 || len(r.Errors) != 1000 || r.Errors[999].Row != 1000 {
		t.Fatalf("report: received %d invalid %d created %d errors %d", r.Received, r.Invalid, r.Created, len(r.Errors))
	}
	if n := b.contactCount(t, b.wsA); n != 1 {
		t.Fatalf("%d contacts stored, want 1", n)
	}
}
