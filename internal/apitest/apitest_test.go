package apitest_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"herald/internal/apitest"
)

// echo answers with the request's method, path, headers and body as a JSON object, or with the
// body as given when the path is /raw.
func echo(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/raw" {
			w.Header().Set("Content-Type", r.Header.Get("X-Answer-Type"))
			w.WriteHeader(http.StatusTeapot)
			_, _ = w.Write(body)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"method":%q,"path":%q,"auth":%q,"type":%q,"idem":%q,"extra":%q,"body":%q}`,
			r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"),
			r.Header.Get("Idempotency-Key"), r.Header.Get("X-Extra"), body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestDoSendsTheRequest(t *testing.T) {
	srv := echo(t)
	res := apitest.Do(t, srv, apitest.Request{Method: "POST", Path: "/v1/x", Key: "k1", ContentType: "application/json",
		IdempotencyKey: "i1", Header: http.Header{"x-extra": {"e1"}}, Body: strings.NewReader(`{"a":1}`)})
	want := map[string]any{"method": "POST", "path": "/v1/x", "auth": "Bearer k1", "type": "application/json",
		"idem": "i1", "extra": "e1", "body": `{"a":1}`}
	if res.Status != http.StatusOK || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, headers %v", res.Status, res.Header)
	}
	if fmt.Sprint(res.Body) != fmt.Sprint(want) {
		t.Errorf("Body = %v, want %v", res.Body, want)
	}

	res = apitest.Do(t, srv, apitest.Request{Method: "GET", Path: "/v1/y"})
	if res.Body["auth"] != "" || res.Body["type"] != "" || res.Body["idem"] != "" || res.Body["body"] != "" {
		t.Errorf("empty fields sent headers or a body: %v", res.Body)
	}
}

func TestDoKeepsBodiesThatAreNotObjects(t *testing.T) {
	srv := echo(t)
	for _, raw := range []string{"", `["x"]`, "null", "not json", `{"a":1}{}`} {
		res := apitest.Do(t, srv, apitest.Request{Method: "POST", Path: "/raw", Body: strings.NewReader(raw)})
		if res.Status != http.StatusTeapot || string(res.Raw) != raw || res.Body != nil {
			t.Errorf("%q: status %d, Raw %q, Body %v", raw, res.Status, res.Raw, res.Body)
		}
	}
}

// recorder is a testing.TB whose Fatal and Fatalf record the failure and end the goroutine.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatal(args ...any) {
	r.failed = fmt.Sprint(args...)
	runtime.Goexit()
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// failure runs f with a recorder and returns what it failed with, "" when it did not fail.
func failure(t *testing.T, f func(tb testing.TB)) string {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r.failed
}

func TestRequireProblem(t *testing.T) {
	srv := echo(t)
	answer := func(contentType, body string) apitest.Response {
		return apitest.Do(t, srv, apitest.Request{Method: "POST", Path: "/raw", Header: http.Header{"X-Answer-Type": {contentType}},
			Body: strings.NewReader(body)})
	}
	const pj = "application/problem+json"
	good := answer(pj, `{"title":"I'm a teapot","status":418,"detail":"short and stout","field":"spout"}`)
	var p apitest.Problem
	if f := failure(t, func(tb testing.TB) { p = good.RequireProblem(tb, 418, "spout") }); f != "" {
		t.Fatalf("a good problem failed: %s", f)
	}
	if p != (apitest.Problem{Title: "I'm a teapot", Status: 418, Detail: "short and stout", Field: "spout"}) {
		t.Errorf("problem = %+v", p)
	}
	if f := failure(t, func(tb testing.TB) { good.RequireProblem(tb, 418, "") }); f != "" {
		t.Errorf("without a field to check: %s", f)
	}
	for _, tc := range []struct {
		name   string
		res    apitest.Response
		status int
		field  string
		want   string
	}{
		{"other status", good, 400, "", "status = 418, want 400"},
		{"other field", good, 418, "lid", `problem field = "spout", want "lid"`},
		{"plain JSON", answer("application/json", `{"title":"t","status":418}`), 418, "", "Content-Type"},
		{"not JSON", answer(pj, `teapot`), 418, "", "problem body"},
		{"status member differs", answer(pj, `{"title":"t","status":400}`), 418, "", "problem status = 400, want 418"},
		{"no title", answer(pj, `{"status":418}`), 418, "", "no title"},
	} {
		if f := failure(t, func(tb testing.TB) { tc.res.RequireProblem(tb, tc.status, tc.field) }); !strings.Contains(f, tc.want) {
			t.Errorf("%s: failed with %q, want it to say %q", tc.name, f, tc.want)
		}
	}
}
