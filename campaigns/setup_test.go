package campaigns_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/campaigns"
	"herald/internal/apitest"
	"herald/internal/contacts"
	"herald/internal/dbtest"
	"herald/internal/workspace"
)

// audBundle is what an audience test needs: a database of its own, the audience API mounted
// under /v1 and keys of two workspaces.
type audBundle struct {
	ctx         context.Context
	pool        *pgxpool.Pool
	srv         *httptest.Server
	wsA, wsB    int64
	keyA        string // campaigns:write on A
	keyB        string // campaigns:write on B
	keyAContact string // contacts:write on A
	keyASend    string // messages:send on A
}

func audSetup(tb testing.TB, opts ...func(*campaigns.AudienceHandler)) *audBundle {
	tb.Helper()
	ctx := context.Background()
	pool := dbtest.NewPool(tb)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := &audBundle{ctx: ctx, pool: pool}
	for _, k := range []struct {
		ws    string
		id    *int64
		key   *string
		scope string
	}{
		{"acme", &b.wsA, &b.keyA, workspace.ScopeCampaignsWrite},
		{"globex", &b.wsB, &b.keyB, workspace.ScopeCampaignsWrite},
		{"acme", &b.wsA, &b.keyAContact, workspace.ScopeContactsWrite},
		{"acme", &b.wsA, &b.keyASend, workspace.ScopeMessagesSend},
	} {
		w, err := workspace.Ensure(ctx, pool, k.ws)
		if err != nil {
			tb.Fatal(err)
		}
		*k.id = w.ID
		if *k.key, err = workspace.CreateKey(ctx, pool, w.ID, []string{k.scope}); err != nil {
			tb.Fatal(err)
		}
	}
	h := &campaigns.AudienceHandler{DB: pool, Logger: logger}
	for _, o := range opts {
		o(h)
	}
	r := chi.NewRouter()
	r.Route("/v1", func(r chi.Router) {
		r.Use(workspace.Auth(pool, logger))
		h.Routes(r)
	})
	b.srv = httptest.NewServer(r)
	tb.Cleanup(b.srv.Close)
	return b
}

// do sends body (a string or []byte as it is, anything else as JSON) with key.
func (b *audBundle) do(tb testing.TB, method, path, key string, body any) apitest.Response {
	tb.Helper()
	req := apitest.Request{Method: method, Path: path, Key: key}
	switch v := body.(type) {
	case nil:
	case string:
		req.ContentType, req.Body = "application/json", strings.NewReader(v)
	case []byte:
		req.ContentType, req.Body = "application/json", bytes.NewReader(v)
	default:
		raw, err := json.Marshal(v)
		if err != nil {
			tb.Fatal(err)
		}
		req.ContentType, req.Body = "application/json", bytes.NewReader(raw)
	}
	return apitest.Do(tb, b.srv, req)
}

// upload posts body as contentType to path with key.
func (b *audBundle) upload(tb testing.TB, path, key, contentType, body string) apitest.Response {
	tb.Helper()
	return apitest.Do(tb, b.srv, apitest.Request{Method: http.MethodPost, Path: path, Key: key,
		ContentType: contentType, Body: strings.NewReader(body)})
}

// contact creates a contact and returns its id.
func (b *audBundle) contact(tb testing.TB, ws int64, externalID, email string, attrs map[string]any) int64 {
	tb.Helper()
	c, _, err := contacts.Upsert(b.ctx, b.pool, ws, contacts.Input{ExternalID: externalID, Email: email,
		Name: "Name " + externalID, Attributes: attrs})
	if err != nil {
		tb.Fatal(err)
	}
	return c.ID
}

// list creates a list holding the contacts.
func (b *audBundle) list(tb testing.TB, ws int64, name string, ids ...int64) {
	tb.Helper()
	if _, err := campaigns.ListCreate(b.ctx, b.pool, ws, name, ""); err != nil {
		tb.Fatal(err)
	}
	_, err := b.pool.Exec(b.ctx, `INSERT INTO list_members (workspace_id, list_id, contact_id)
		SELECT $1, l.id, x FROM lists l, unnest($3::bigint[]) x WHERE l.workspace_id = $1 AND l.name = $2`, ws, name, ids)
	if err != nil {
		tb.Fatal(err)
	}
}

// segment saves a segment.
func (b *audBundle) segment(tb testing.TB, ws int64, name, filter string) {
	tb.Helper()
	if _, _, err := campaigns.SegmentSave(b.ctx, b.pool, ws, name, filter); err != nil {
		tb.Fatalf("segment %s: %v", name, err)
	}
}

// members returns the external ids of the list's members, sorted.
func (b *audBundle) members(tb testing.TB, ws int64, list string) []string {
	tb.Helper()
	rows, err := b.pool.Query(b.ctx, `SELECT c.external_id FROM list_members m JOIN lists l ON l.id = m.list_id
		JOIN contacts c ON c.id = m.contact_id WHERE l.workspace_id = $1 AND l.name = $2 ORDER BY 1`, ws, list)
	if err != nil {
		tb.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Fatal(err)
	}
	return ids
}

// count runs a count(*) query.
func (b *audBundle) count(tb testing.TB, query string, args ...any) int {
	tb.Helper()
	var n int
	if err := b.pool.QueryRow(b.ctx, query, args...).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// audSorted returns a sorted copy.
func audSorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	if s == nil {
		s = []string{}
	}
	return s
}
