package httpx_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"herald/internal/httpx"
)

type target struct {
	Name  string         `json:"name"`
	Count int            `json:"count"`
	Tags  []string       `json:"tags"`
	Data  map[string]any `json:"data"`
}

func decode(body, contentType string, limit int64) (target, error) {
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	var t target
	err := httpx.DecodeJSON(httptest.NewRecorder(), r, limit, &t)
	return t, err
}

func TestDecodeJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body, ct string
		limit          int64
		status         int
		field          string
	}{
		{"ok", `{"name":"a","count":2,"tags":["x"],"data":{"k":[1,{"z":null}]}}`, "application/json", 1 << 10, 0, ""},
		{"ok with charset", `{"name":"a"}`, "application/json; charset=utf-8", 1 << 10, 0, ""},
		{"ok problem+json type", `{"name":"a"}`, "application/merge-patch+json", 1 << 10, 0, ""},
		{"no content type", `{"name":"a"}`, "", 1 << 10, 0, ""},
		{"form content type", `name=a`, "application/x-www-form-urlencoded", 1 << 10, 415, ""},
		{"bad content type", `{}`, "text/plain; charset=", 1 << 10, 415, ""},
		{"empty", ``, "", 1 << 10, 400, ""},
		{"truncated", `{"name":"a"`, "", 1 << 10, 400, ""},
		{"syntax", `{"name":'a'}`, "", 1 << 10, 400, ""},
		{"array", `[1,2]`, "", 1 << 10, 400, ""},
		{"string", `"x"`, "", 1 << 10, 400, ""},
		{"trailing object", `{"name":"a"}{"name":"b"}`, "", 1 << 10, 400, ""},
		{"trailing garbage", `{"name":"a"} x`, "", 1 << 10, 400, ""},
		{"unknown field", `{"name":"a","admin":true}`, "", 1 << 10, 422, "admin"},
		{"unknown field with CRLF, echoed escaped", `{"a\r\nb":1}`, "", 1 << 10, 422, `a\r\nb`},
		{"wrong type", `{"count":"many"}`, "", 1 << 10, 422, "count"},
		{"number overflow", `{"count":1e999}`, "", 1 << 10, 422, "count"},
		{"wrong element type", `{"tags":[1]}`, "", 1 << 10, 422, "tags"},
		{"over the limit", `{"name":"` + strings.Repeat("a", 2048) + `"}`, "", 1 << 10, 413, ""},
		{"limit hit in trailing data", `{"name":"a"}` + strings.Repeat(" ", 2048), "", 1 << 10, 413, ""},
		{"deep nesting", `{"data":{"k":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}}`, "", 1 << 20, 400, ""},
		{"invalid UTF-8 kept as replacement", "{\"name\":\"\xff\"}", "", 1 << 10, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decode(tc.body, tc.ct, tc.limit)
			if tc.status == 0 {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			var p *httpx.Problem
			if !errors.As(err, &p) || p.Status != tc.status || p.Field != tc.field || p.Title == "" {
				t.Fatalf("err = %#v, want a %d problem naming %q", err, tc.status, tc.field)
			}
		})
	}
}

// FuzzDecodeJSON: whatever the body, DecodeJSON either decodes it or returns a 4xx problem.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"name":"a"}`, `{"count":1e999}`, `[`, `{"a":1}`, `{"tags":[null]}`, "{\"name\":\"\xff\"}", `{}{}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		_, err := decode(body, "application/json", 4096)
		if err == nil {
			return
		}
		var p *httpx.Problem
		if !errors.As(err, &p) || p.Status < 400 || p.Status > 499 {
			t.Fatalf("body %q: err = %v, want a 4xx problem", body, err)
		}
	})
}

// TestDecodeOptionalJSON: an empty or blank body leaves the target alone; any other body is
// held to DecodeJSON's rules, the limit included.
func TestDecodeOptionalJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body string
		status     int
		want       string
	}{
		{"empty", ``, 0, "kept"},
		{"blank", " \r\n\t", 0, "kept"},
		{"object", `{"name":"a"}`, 0, "a"},
		{"truncated", `{"name":`, 400, ""},
		{"unknown field", `{"x":1}`, 422, ""},
		{"over the limit", `{"name":"` + strings.Repeat("a", 2048) + `"}`, 413, ""},
		{"blank over the limit", strings.Repeat(" ", 2048), 413, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tc.body))
			got := target{Name: "kept"}
			err := httpx.DecodeOptionalJSON(httptest.NewRecorder(), r, 1<<10, &got)
			if tc.status == 0 {
				if err != nil || got.Name != tc.want {
					t.Fatalf("got %q, %v; want %q", got.Name, err, tc.want)
				}
				return
			}
			var p *httpx.Problem
			if !errors.As(err, &p) || p.Status != tc.status {
				t.Fatalf("err = %#v, want a %d problem", err, tc.status)
			}
		})
	}
}
