package templates_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"herald/internal/apitest"
	"herald/internal/dbtest"
	"herald/internal/workspace"
	"herald/templates"
)

type httpBundle struct {
	srv                *httptest.Server
	keyA, keyB, keyCon string // workspace A (messages:send), B (campaigns:write), A (contacts:write only)
}

func setupHTTP(t *testing.T, maxBody int64) httpBundle {
	t.Helper()
	ctx := context.Background()
	pool := dbtest.NewPool(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	key := func(ws string, scope string) string {
		w, err := workspace.Ensure(ctx, pool, ws)
		if err != nil {
			t.Fatal(err)
		}
		k, err := workspace.CreateKey(ctx, pool, w.ID, []string{scope})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	b := httpBundle{
		keyA:   key("acme", workspace.ScopeMessagesSend),
		keyB:   key("bravo", workspace.ScopeCampaignsWrite),
		keyCon: key("acme", workspace.ScopeContactsWrite),
	}
	r := chi.NewRouter()
	r.Route("/v1", func(r chi.Router) {
		r.Use(workspace.Auth(pool, logger))
		(&templates.Handler{DB: pool, Logger: logger, MaxBodyBytes: maxBody}).Routes(r)
	})
	b.srv = httptest.NewServer(r)
	t.Cleanup(b.srv.Close)
	return b
}

// do sends method path with key (none when empty) and body, as JSON when not empty, and fails the
// test unless the answer's body is empty or a JSON object.
func (b httpBundle) do(t *testing.T, method, path, key, body string) apitest.Response {
	t.Helper()
	r := apitest.Request{Method: method, Path: path, Key: key, Body: strings.NewReader(body)}
	if body != "" {
		r.ContentType = "application/json"
	}
	res := apitest.Do(t, b.srv, r)
	if len(res.Raw) > 0 {
		var obj map[string]any
		if err := json.Unmarshal(res.Raw, &obj); err != nil {
			t.Fatalf("%s %s: body %q is not a JSON object: %v", method, path, res.Raw, err)
		}
	}
	return res
}

// expect checks r's status and, for an error status, that r is a problem naming field (when set).
func expect(t *testing.T, what string, r apitest.Response, status int, field string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("%s: status %d, want %d (body %v)", what, r.Status, status, r.Body)
	}
	if status >= 400 {
		r.RequireProblem(t, status, field)
	} else if field != "" && r.Body["field"] != field {
		t.Errorf("%s: field %v, want %q (body %v)", what, r.Body["field"], field, r.Body)
	}
}

func TestHTTPCreateGetPreview(t *testing.T) {
	t.Parallel()
	b := setupHTTP(t, 0)
	body := `{"name":"welcome","subject":"Hi {{.name}}","html":"<p>Hello {{.name}}</p><a href=\"{{.url}}\">go</a>","text":""}`
	r := b.do(t, "POST", "/v1/templates", b.keyA, body)
	expect(t, "create", r, http.StatusCreated, "")
	if r.Body["version"] != 1.0 || r.Body["name"] != "welcome" || r.Body["created_at"] == nil {
		t.Fatalf("create body = %v", r.Body)
	}
	if loc := r.Header.Get("Location"); loc != "/v1/templates/welcome/versions/1" {
		t.Errorf("Location = %q", loc)
	}
	r = b.do(t, "POST", "/v1/templates", b.keyA, strings.Replace(body, "Hello", "Welcome", 1))
	expect(t, "create v2", r, http.StatusCreated, "")
	if r.Body["version"] != 2.0 {
		t.Fatalf("second create version = %v", r.Body["version"])
	}

	r = b.do(t, "GET", "/v1/templates/welcome", b.keyA, "")
	expect(t, "get latest", r, http.StatusOK, "")
	if r.Body["version"] != 2.0 || !strings.Contains(r.Body["html"].(string), "Welcome") {
		t.Errorf("latest = %v", r.Body)
	}
	r = b.do(t, "GET", "/v1/templates/welcome/versions/1", b.keyA, "")
	expect(t, "get v1", r, http.StatusOK, "")
	if r.Body["version"] != 1.0 || !strings.Contains(r.Body["html"].(string), "Hello") {
		t.Errorf("v1 = %v", r.Body)
	}
	for _, p := range []string{"/v1/templates/welcome/versions/3", "/v1/templates/welcome/versions/0",
		"/v1/templates/welcome/versions/x", "/v1/templates/nope", "/v1/templates/..%2Fx"} {
		expect(t, "GET "+p, b.do(t, "GET", p, b.keyA, ""), http.StatusNotFound, "")
	}

	r = b.do(t, "POST", "/v1/templates/welcome/preview", b.keyA,
		`{"version":1,"data":{"name":"<b>Ann</b>","url":"https://app.example/x?id=12345678"}}`)
	expect(t, "preview", r, http.StatusOK, "")
	if r.Body["subject"] != "Hi <b>Ann</b>" || !strings.Contains(r.Body["html"].(string), "Hello &lt;b&gt;Ann&lt;/b&gt;") ||
		!strings.Contains(r.Body["text"].(string), "go <https://app.example/x?id=12345678>") {
		t.Errorf("preview = %v", r.Body)
	}
	r = b.do(t, "POST", "/v1/templates/welcome/preview", b.keyA, `{"data":{"name":"x","url":"https://a.example"}}`)
	expect(t, "preview latest", r, http.StatusOK, "")
	if !strings.Contains(r.Body["html"].(string), "Welcome") {
		t.Errorf("preview without version did not use the latest: %v", r.Body)
	}
	r = b.do(t, "POST", "/v1/templates/welcome/preview", b.keyA, `{"data":{"name":"x\r\nBcc: v@example.com","url":""}}`)
	expect(t, "preview CRLF subject", r, http.StatusUnprocessableEntity, "data")
	if !strings.Contains(r.Body["detail"].(string), "subject") {
		t.Errorf("detail %q does not name the subject", r.Body["detail"])
	}
	r = b.do(t, "POST", "/v1/templates/welcome/preview", b.keyA, `{"data":{"nmae":"x","url":""}}`)
	expect(t, "preview missing key", r, http.StatusUnprocessableEntity, "data")
	if d := r.Body["detail"].(string); !strings.Contains(d, "subject") || !strings.Contains(d, `"name"`) {
		t.Errorf("detail %q does not name the part and key", d)
	}
	expect(t, "preview data array", b.do(t, "POST", "/v1/templates/welcome/preview", b.keyA, `{"data":[1]}`),
		http.StatusUnprocessableEntity, "data")
	expect(t, "preview negative version", b.do(t, "POST", "/v1/templates/welcome/preview", b.keyA, `{"version":-1}`),
		http.StatusUnprocessableEntity, "version")
	expect(t, "preview absent version", b.do(t, "POST", "/v1/templates/welcome/preview", b.keyA, `{"version":9,"data":{}}`),
		http.StatusNotFound, "")
}

func TestHTTPWorkspaceIsolation(t *testing.T) {
	t.Parallel()
	b := setupHTTP(t, 0)
	expect(t, "create in A", b.do(t, "POST", "/v1/templates", b.keyA, `{"name":"secret","subject":"s","html":"<p>A only</p>"}`),
		http.StatusCreated, "")
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/v1/templates/secret", ""},
		{"GET", "/v1/templates/secret/versions/1", ""},
		{"POST", "/v1/templates/secret/preview", `{"data":{}}`},
		{"POST", "/v1/templates/secret/preview", `{"version":1,"data":{}}`},
	} {
		expect(t, "B "+c.method+" "+c.path, b.do(t, c.method, c.path, b.keyB, c.body), http.StatusNotFound, "")
	}
	// B saving the same name starts its own history at version 1 and leaves A's untouched.
	r := b.do(t, "POST", "/v1/templates", b.keyB, `{"name":"secret","subject":"s","html":"<p>B</p>"}`)
	expect(t, "create in B", r, http.StatusCreated, "")
	if r.Body["version"] != 1.0 {
		t.Errorf("B's first version = %v", r.Body["version"])
	}
	r = b.do(t, "GET", "/v1/templates/secret", b.keyA, "")
	if r.Status != http.StatusOK || r.Body["html"] != "<p>A only</p>" || r.Body["version"] != 1.0 {
		t.Errorf("A's template after B's save = %v", r.Body)
	}
}

func TestHTTPHostileInput(t *testing.T) {
	t.Parallel()
	b := setupHTTP(t, 64<<10)
	for _, tc := range []struct {
		name, body string
		status     int
		field      string
	}{
		{"unknown field", `{"name":"a","subject":"s","text":"t","admin":true}`, http.StatusUnprocessableEntity, "admin"},
		{"invalid name", `{"name":"a b/../c","subject":"s","text":"t"}`, http.StatusUnprocessableEntity, "name"},
		{"name too long", `{"name":"` + strings.Repeat("n", 101) + `","subject":"s","text":"t"}`, http.StatusUnprocessableEntity, "name"},
		{"html parse error", `{"name":"a","subject":"s","html":"<p>{{.x</p>"}`, http.StatusUnprocessableEntity, "html"},
		{"subject parse error", `{"name":"a","subject":"{{if}}","text":"t"}`, http.StatusUnprocessableEntity, "subject"},
		{"text parse error", `{"name":"a","subject":"s","text":"{{nope}}"}`, http.StatusUnprocessableEntity, "text"},
		{"html escape error", `{"name":"a","subject":"s","html":"<a href=\"{{.u}}"}`, http.StatusUnprocessableEntity, "html"},
		{"range bomb", `{"name":"a","subject":"s","text":"{{range 1000000000000}}{{end}}"}`, http.StatusUnprocessableEntity, "text"},
		{"subject CRLF", `{"name":"a","subject":"s\r\nBcc: x@example.com","text":"t"}`, http.StatusUnprocessableEntity, "subject"},
		{"wrong type", `{"name":"a","subject":1,"text":"t"}`, http.StatusUnprocessableEntity, "subject"},
		{"oversized", `{"name":"a","subject":"s","text":"` + strings.Repeat("x", 70<<10) + `"}`, http.StatusRequestEntityTooLarge, ""},
		{"malformed", `{"name":`, http.StatusBadRequest, ""},
		{"two objects", `{"name":"a","subject":"s","text":"t"}{}`, http.StatusBadRequest, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := b.do(t, "POST", "/v1/templates", b.keyA, tc.body)
			expect(t, tc.name, r, tc.status, tc.field)
		})
	}
	r := b.do(t, "POST", "/v1/templates", b.keyA, `{"name":"a","subject":"s","html":"<p>{{.x</p>"}`)
	if d, _ := r.Body["detail"].(string); !strings.HasPrefix(d, "html: ") || !strings.Contains(d, "template: html:1") {
		t.Errorf("parse error detail = %q, want it to name the part and the problem", d)
	}
}

func TestHTTPPartTooLarge(t *testing.T) {
	t.Parallel()
	b := setupHTTP(t, 0)
	body := `{"name":"a","subject":"s","html":"` + strings.Repeat("x", templates.MaxPartBytes+1) + `"}`
	expect(t, "html over the part limit", b.do(t, "POST", "/v1/templates", b.keyA, body), http.StatusUnprocessableEntity, "html")
}

func TestHTTPAuth(t *testing.T) {
	t.Parallel()
	b := setupHTTP(t, 0)
	forged := "hrld_" + strings.Repeat("A", 43)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/templates", `{"name":"a","subject":"s","text":"t"}`},
		{"GET", "/v1/templates/a", ""},
		{"GET", "/v1/templates/a/versions/1", ""},
		{"POST", "/v1/templates/a/preview", `{}`},
	} {
		for _, key := range []string{"", forged, b.keyA + "x"} {
			r := b.do(t, c.method, c.path, key, c.body)
			expect(t, c.method+" "+c.path+" with key "+key, r, http.StatusUnauthorized, "")
		}
		expect(t, c.method+" "+c.path+" contacts:write only", b.do(t, c.method, c.path, b.keyCon, c.body), http.StatusForbidden, "")
	}
}
