package contacts_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"herald/internal/contacts"
	"herald/internal/httpx"
)

func requireStatus(t *testing.T, err error, status int) {
	t.Helper()
	var p *httpx.Problem
	if !errors.As(err, &p) || p.Status != status {
		t.Fatalf("err = %v, want a %d problem", err, status)
	}
}

func TestUploadFormat(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ctype, encoding string
		want            contacts.Format
	}{
		{"text/csv", "", contacts.FormatCSV},
		{"text/csv; charset=UTF-8", "identity", contacts.FormatCSV},
		{"application/x-ndjson", "", contacts.FormatNDJSON},
		{"application/jsonl; charset=utf8", "", contacts.FormatNDJSON},
		{"text/csv; charset=latin1", "", ""},
		{"text/csv", "gzip", ""},
		{"application/json", "", ""},
		{"", "", ""},
		{"text/csv; charset", "", ""},
	} {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Header.Set("Content-Type", tc.ctype)
		r.Header.Set("Content-Encoding", tc.encoding)
		got, err := contacts.UploadFormat(r)
		if tc.want == "" {
			requireStatus(t, err, http.StatusUnsupportedMediaType)
		} else if err != nil || got != tc.want {
			t.Errorf("%q %q: %q, %v; want %q", tc.ctype, tc.encoding, got, err, tc.want)
		}
	}
}

func TestCSVRecords(t *testing.T) {
	t.Parallel()
	recs, header, err := contacts.NewCSVRecords(strings.NewReader("\ufeffa,b\n1,2\n3\n\"x\"y,z\n4,5,6\n"), "a")
	if err != nil || !slices.Equal(header, []string{"\ufeffa", "b"}) {
		t.Fatalf("header %q, %v", header, err)
	}
	var got []string
	for {
		rec, err := recs.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d:%s:%v", rec.Row, strings.Join(rec.Fields, "|"), rec.Malformed != ""))
	}
	want := []string{"2:1|2:false", "3::true", "4::true", "5::true"} // wrong field counts, a bare quote
	if !slices.Equal(got, want) {
		t.Fatalf("records %q, want %q", got, want)
	}

	recs, _, err = contacts.NewCSVRecords(strings.NewReader("a,b\n1\n1,2,3\n"), "a")
	if err != nil {
		t.Fatal(err)
	}
	recs.AnyFieldCount()
	for _, want := range []string{"1", "1|2|3"} {
		if rec, err := recs.Next(); err != nil || strings.Join(rec.Fields, "|") != want {
			t.Fatalf("record %+v, %v; want %s", rec, err, want)
		}
	}

	for _, body := range []string{"", "a,\"b\n", "\"" + strings.Repeat("y", contacts.MaxRowBytes+16<<10)} {
		_, _, err := contacts.NewCSVRecords(strings.NewReader(body), "a")
		requireStatus(t, err, http.StatusUnprocessableEntity)
	}
	recs, _, err = contacts.NewCSVRecords(strings.NewReader("a\n1\n\""+strings.Repeat("y", contacts.MaxRowBytes+16<<10)), "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := recs.Next(); err != nil {
		t.Fatal(err)
	}
	_, err = recs.Next()
	requireStatus(t, err, http.StatusUnprocessableEntity)
}

func TestNDJSONLines(t *testing.T) {
	t.Parallel()
	body := "{}\n\n  \r\n [1] \n" + strings.Repeat("y", contacts.MaxRowBytes+1) + "\n{\"a\":1}"
	lines := contacts.NewNDJSONLines(strings.NewReader(body))
	var got []string
	for {
		l, err := lines.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d:%s:%v", l.Row, l.Line, l.Malformed != ""))
	}
	// Blank lines are numbered but not returned; the over-long line is malformed, not fatal.
	want := []string{"1:{}:false", "4:[1]:false", "5::true", `6:{"a":1}:false`}
	if !slices.Equal(got, want) {
		t.Fatalf("lines %q, want %q", got, want)
	}
}

// An upload may hold MaxImportRows rows; the reader fails on the next one, whatever the format.
func TestUploadRowLimit(t *testing.T) {
	t.Parallel()
	count := func(next func() error) (int, error) {
		for n := 0; ; n++ {
			if err := next(); err != nil {
				return n, err
			}
		}
	}
	rows := contacts.MaxImportRows + 1
	lines := contacts.NewNDJSONLines(strings.NewReader(strings.Repeat("{}\n\n", rows)))
	n, err := count(func() error { _, err := lines.Next(); return err })
	if n != contacts.MaxImportRows {
		t.Fatalf("NDJSON: failed after %d rows", n)
	}
	requireStatus(t, err, http.StatusRequestEntityTooLarge)

	recs, _, err := contacts.NewCSVRecords(strings.NewReader("a\n"+strings.Repeat("x\n", rows)), "a")
	if err != nil {
		t.Fatal(err)
	}
	n, err = count(func() error { _, err := recs.Next(); return err })
	if n != contacts.MaxImportRows {
		t.Fatalf("CSV: failed after %d rows", n)
	}
	requireStatus(t, err, http.StatusRequestEntityTooLarge)
}
