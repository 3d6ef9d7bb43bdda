package contacts_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"herald/internal/contacts"
	"herald/internal/workspace"
)

// rectifications returns the workspace's contact.rectify audit entries, oldest first, as
// "actor target fields".
func (b *bundle) rectifications(tb testing.TB, ws int64) []string {
	tb.Helper()
	rows, err := b.pool.Query(b.ctx, `SELECT actor || ' ' || target || ' ' || (detail->'fields')::text FROM audit_log
		WHERE workspace_id = $1 AND action = 'contact.rectify' ORDER BY id`, ws)
	if err != nil {
		tb.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func TestRectify(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p, err := workspace.Authenticate(b.ctx, b.pool, b.keyA)
	if err != nil {
		t.Fatal(err)
	}
	actor := "api_key:" + strconv.FormatInt(p.KeyID, 10)
	first := map[string]any{"email": "Ada@Example.com", "name": "Ada", "locale": "en-GB", "timezone": "Europe/London",
		"attributes": map[string]any{"plan": "pro", "seats": 3}}
	res := b.putJSON(t, b.keyA, "crm-1", first)
	if res.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", res.Status, res.Raw)
	}
	var id int64
	if err := b.pool.QueryRow(b.ctx, `SELECT id FROM contacts WHERE external_id = 'crm-1'`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	target := actor + " contact:" + strconv.FormatInt(id, 10)
	created := res.Body["updated_at"]
	var want []string
	for _, step := range []struct {
		name   string
		body   map[string]any
		fields string // "" for no record
	}{
		{"the same again", first, ""},
		{"the same, written differently", map[string]any{"email": "Ada@EXAMPLE.COM", "name": "Ada", "locale": "en-gb",
			"timezone": "Europe/London", "attributes": map[string]any{"seats": 3, "plan": "pro"}}, ""},
		{"a new name", map[string]any{"email": "Ada@example.com", "name": "Ada L.", "locale": "en-GB", "timezone": "Europe/London",
			"attributes": map[string]any{"plan": "pro", "seats": 3}}, `["name"]`},
		{"a new address and attributes", map[string]any{"email": "ada@example.org", "name": "Ada L.", "locale": "en-GB",
			"timezone": "Europe/London", "attributes": map[string]any{"plan": "pro", "seats": 4}}, `["email", "attributes"]`},
		{"every field (omitted ones empty)", map[string]any{"email": "lovelace@example.org"}, `["email", "name", "locale", "timezone", "attributes"]`},
	} {
		res := b.putJSON(t, b.keyA, "crm-1", step.body)
		if res.Status != http.StatusOK {
			t.Fatalf("%s: %d %s", step.name, res.Status, res.Raw)
		}
		if step.fields == "" {
			if res.Body["updated_at"] != created {
				t.Errorf("%s: updated_at moved from %v to %v", step.name, created, res.Body["updated_at"])
			}
		} else {
			want = append(want, target+" "+step.fields)
		}
		if got := b.rectifications(t, b.wsA); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("%s: rectifications %v, want %v", step.name, got, want)
		}
	}
	// The records name fields, never values.
	var n int
	if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM audit_log WHERE detail::text ~* '(ada|lovelace|example|pro|london)'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d audit entries hold a value (%v)", n, err)
	}
	// A refused PUT records nothing; B's key on the same external id makes B's own contact.
	b.putJSON(t, b.keyA, "crm-1", map[string]any{"email": "not an address"}).RequireProblem(t, 422, "email")
	if res := b.putJSON(t, b.keyB, "crm-1", map[string]any{"email": "other@example.com"}); res.Status != http.StatusCreated {
		t.Fatalf("B: %d", res.Status)
	}
	if got := b.rectifications(t, b.wsA); len(got) != len(want) {
		t.Fatalf("rectifications after refused and foreign PUTs: %v", got)
	}
	if got := b.rectifications(t, b.wsB); len(got) != 0 {
		t.Fatalf("B's rectifications: %v", got)
	}
}

// TestRectifyConcurrent: PUTs of one new contact racing each other create it once and record
// a rectification for each change made after it exists, never failing.
func TestRectifyConcurrent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
				_, _, _, err := contacts.UpsertAs(ctx, tx, b.wsA, contacts.Input{ExternalID: "race",
					Email: "r@example.com", Name: "n" + strconv.Itoa(i%2)}, "test")
				return err
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := b.contactCount(t, b.wsA); n != 1 {
		t.Fatalf("%d contacts", n)
	}
	for _, r := range b.rectifications(t, b.wsA) {
		if !strings.HasSuffix(r, `["name"]`) {
			t.Fatalf("rectification %q", r)
		}
	}
}

func TestUpsertAsInvalid(t *testing.T) {
	t.Parallel()
	b := setup(t)
	err := pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
		_, _, _, err := contacts.UpsertAs(b.ctx, tx, b.wsA, contacts.Input{ExternalID: "x\r\ny", Email: "a@example.com"}, "test")
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "external_id") {
		t.Fatalf("err = %v", err)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		t.Fatal("validation reached the database")
	}
}

// TestImportAudited: an import through the API writes one contacts.import entry with its counts.
func TestImportAudited(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := "external_id,email,name\nc1,a@example.com,Ann\nc2,b@example.com,Bo\nc2,b@example.com,Bob\nc3,bad,\n"
	res := b.do(t, http.MethodPost, "/v1/contacts/import", b.keyA, "text/csv", strings.NewReader(body))
	if res.Status != http.StatusOK {
		t.Fatalf("import: %d %s", res.Status, res.Raw)
	}
	var actor, detail string
	if err := b.pool.QueryRow(b.ctx, `SELECT actor, detail::text FROM audit_log WHERE workspace_id = $1 AND action = 'contacts.import'`,
		b.wsA).Scan(&actor, &detail); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(actor, "api_key:") || detail != `{"created": 2, "invalid": 1, "updated": 0, "received": 4, "duplicates": 1}` {
		t.Fatalf("audit %s %s", actor, detail)
	}
}
