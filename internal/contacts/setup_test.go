package contacts_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/internal/apitest"
	"herald/internal/contacts"
	"herald/internal/dbtest"
	"herald/internal/workspace"
)

// bundle is what a contacts test needs: a database, an API server and keys of two workspaces.
type bundle struct {
	ctx      context.Context
	pool     *pgxpool.Pool
	srv      *httptest.Server
	wsA      int64
	wsB      int64
	keyA     string // contacts:write on workspace A
	keyB     string // contacts:write on workspace B
	keyASend string // messages:send only, on workspace A
}

// setup starts the contacts API on a fresh database; opts adjust the handler before it is mounted.
func setup(tb testing.TB, opts ...func(*contacts.Handler)) *bundle {
	tb.Helper()
	ctx := context.Background()
	pool := dbtest.NewPool(tb)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := &bundle{ctx: ctx, pool: pool}
	for _, ws := range []struct {
		name string
		id   *int64
		key  *string
	}{{"acme", &b.wsA, &b.keyA}, {"globex", &b.wsB, &b.keyB}} {
		w, err := workspace.Ensure(ctx, pool, ws.name)
		if err != nil {
			tb.Fatal(err)
		}
		*ws.id = w.ID
		if *ws.key, err = workspace.CreateKey(ctx, pool, w.ID, []string{workspace.ScopeContactsWrite}); err != nil {
			tb.Fatal(err)
		}
	}
	var err error
	if b.keyASend, err = workspace.CreateKey(ctx, pool, b.wsA, []string{workspace.ScopeMessagesSend}); err != nil {
		tb.Fatal(err)
	}
	h := &contacts.Handler{DB: pool, Logger: logger}
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

// do sends method path with key and contentType (none when empty) and body.
func (b *bundle) do(tb testing.TB, method, path, key, contentType string, body io.Reader) apitest.Response {
	tb.Helper()
	return apitest.Do(tb, b.srv, apitest.Request{Method: method, Path: path, Key: key, ContentType: contentType, Body: body})
}

// putJSON PUTs v as the contact external id with key.
func (b *bundle) putJSON(tb testing.TB, key, externalID string, v any) apitest.Response {
	tb.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b.do(tb, http.MethodPut, "/v1/contacts/"+externalID, key, "application/json", bytes.NewReader(body))
}

// contactCount counts the workspace's contacts in the database.
func (b *bundle) contactCount(tb testing.TB, ws int64) int {
	tb.Helper()
	var n int
	if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM contacts WHERE workspace_id = $1`, ws).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}
