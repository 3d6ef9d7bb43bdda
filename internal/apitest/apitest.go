// Package apitest is the HTTP plumbing the API test suites share: it sends one authenticated
// request to an httptest server and reads the whole answer, and it checks RFC 9457 problem
// responses. What a suite sets up (databases, keys, servers) stays in that suite.
package apitest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// Request is one API request. Empty strings leave their header unset.
type Request struct {
	Method         string
	Path           string // appended to the server's URL, e.g. "/v1/messages"
	Key            string // API key, sent as "Authorization: Bearer <Key>"
	ContentType    string
	IdempotencyKey string      // sent as Idempotency-Key
	Header         http.Header // further headers, set after the ones above
	Body           io.Reader   // nil for none
}

// Response is an answer read in full.
type Response struct {
	Status int
	Header http.Header
	Raw    []byte
	// Body is Raw decoded when it is a JSON object, nil otherwise.
	Body map[string]any
}

// Do sends r to srv with srv's client and returns the answer; any failure to send the request or
// read the answer fails the test at once.
func Do(tb testing.TB, srv *httptest.Server, r Request) Response {
	tb.Helper()
	req, err := http.NewRequest(r.Method, srv.URL+r.Path, r.Body)
	if err != nil {
		tb.Fatal(err)
	}
	if r.Key != "" {
		req.Header.Set("Authorization", "Bearer "+r.Key)
	}
	if r.ContentType != "" {
		req.Header.Set("Content-Type", r.ContentType)
	}
	if r.IdempotencyKey != "" {
		req.Header.Set("Idempotency-Key", r.IdempotencyKey)
	}
	for name, values := range r.Header {
		req.Header[http.CanonicalHeaderKey(name)] = values
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatalf("%s %s: reading the body: %v", r.Method, r.Path, err)
	}
	out := Response{Status: res.StatusCode, Header: res.Header, Raw: raw}
	var body map[string]any
	if json.Unmarshal(raw, &body) == nil {
		out.Body = body
	}
	return out
}

// Problem is the body of an RFC 9457 problem response, with Herald's field member.
type Problem struct {
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Field  string `json:"field"`
}

// RequireProblem fails the test at once unless r is a problem response with the HTTP status:
// Content-Type application/problem+json, a body whose status member is that status and whose
// title is not empty, and, when field is not empty, whose field member is field. It returns the
// problem for further checks.
func (r Response) RequireProblem(tb testing.TB, status int, field string) Problem {
	tb.Helper()
	if r.Status != status {
		tb.Fatalf("status = %d, want %d; body %s", r.Status, status, r.Raw)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		tb.Fatalf("Content-Type = %q, want application/problem+json; body %s", ct, r.Raw)
	}
	var p Problem
	if err := json.Unmarshal(r.Raw, &p); err != nil {
		tb.Fatalf("problem body %s: %v", r.Raw, err)
	}
	if p.Status != status {
		tb.Fatalf("problem status = %d, want %d; body %s", p.Status, status, r.Raw)
	}
	if p.Title == "" {
		tb.Fatalf("problem has no title; body %s", r.Raw)
	}
	if field != "" && p.Field != field {
		tb.Fatalf("problem field = %q, want %q; body %s", p.Field, field, r.Raw)
	}
	return p
}
