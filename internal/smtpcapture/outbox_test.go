package smtpcapture_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"herald/internal/smtpcapture"
)

// outboxSetup captures two messages, the second with a hostile subject, and mounts the
// handler at /dev/outbox the way `herald dev` does.
func outboxSetup(t *testing.T) (*smtpcapture.Server, http.Handler, []byte) {
	t.Helper()
	srv := setup(t, smtpcapture.Options{Keep: 2})
	first := rawMessage("Willkommen", "<w@herald.test>")
	if err := sendNetSMTP(srv, nil, "a@example.com", []string{"one@example.org"}, first); err != nil {
		t.Fatal(err)
	}
	hostile := rawMessage(`<script>alert(1)</script>`, `<"><img src=x onerror=alert(2)>@t>`)
	if err := sendNetSMTP(srv, nil, "a@example.com", []string{"two@example.org", "three@example.org"}, hostile); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/dev/outbox", srv.OutboxHandler())
	mux.Handle("/dev/outbox/", srv.OutboxHandler())
	return srv, mux, first
}

func get(h http.Handler, target string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestOutboxJSON(t *testing.T) {
	t.Parallel()
	_, h, first := outboxSetup(t)

	for _, rec := range []*httptest.ResponseRecorder{
		get(h, "/dev/outbox?format=json"),
		get(h, "/dev/outbox", "Accept", "application/json"),
	} {
		if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
			t.Fatalf("status %d, type %q", rec.Code, rec.Header().Get("Content-Type"))
		}
		var got []struct {
			ID         int64     `json:"id"`
			ReceivedAt time.Time `json:"received_at"`
			From       string    `json:"from"`
			To         []string  `json:"to"`
			Subject    string    `json:"subject"`
			MessageID  string    `json:"message_id"`
			Size       int       `json:"size"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatalf("decode %s: %v", rec.Body, err)
		}
		if len(got) != 2 || got[0].ID != 2 || got[1].ID != 1 {
			t.Fatalf("got %+v, want IDs 2, 1 (newest first)", got)
		}
		old := got[1]
		if old.From != "a@example.com" || len(old.To) != 1 || old.To[0] != "one@example.org" ||
			old.Subject != "Willkommen" || old.MessageID != "<w@herald.test>" || old.Size != len(first) ||
			old.ReceivedAt.IsZero() {
			t.Errorf("entry = %+v", old)
		}
		if got[0].Subject != "<script>alert(1)</script>" || len(got[0].To) != 2 {
			t.Errorf("hostile entry = %+v", got[0])
		}
	}
}

func TestOutboxJSONEmpty(t *testing.T) {
	t.Parallel()
	srv := setup(t, smtpcapture.Options{})
	rec := get(srv.OutboxHandler(), "/?format=json")
	if body := strings.TrimSpace(rec.Body.String()); body != "[]" {
		t.Fatalf("empty outbox JSON = %q, want []", body)
	}
}

func TestOutboxHTML(t *testing.T) {
	t.Parallel()
	_, h, _ := outboxSetup(t)
	rec := get(h, "/dev/outbox")
	body := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("status %d, type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	for _, bad := range []string{"<script>", "<img"} {
		if strings.Contains(body, bad) {
			t.Errorf("page contains unescaped %q:\n%s", bad, body)
		}
	}
	for _, want := range []string{
		"&lt;script&gt;alert(1)&lt;/script&gt;", "Willkommen", "&lt;w@herald.test&gt;",
		"two@example.org, three@example.org", `href="?id=1"`, `href="?id=2"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Index(body, "?id=2") > strings.Index(body, "?id=1") {
		t.Error("page is not newest first")
	}
}

func TestOutboxRaw(t *testing.T) {
	t.Parallel()
	srv, h, first := outboxSetup(t)
	tests := []struct {
		target     string
		wantStatus int
	}{
		{"/dev/outbox/1", http.StatusOK},
		{"/dev/outbox?id=1", http.StatusOK},
		{"/dev/outbox/99", http.StatusNotFound},
		{"/dev/outbox?id=99", http.StatusNotFound},
		{"/dev/outbox?id=abc", http.StatusUnprocessableEntity},
	}
	for _, tt := range tests {
		rec := get(h, tt.target)
		if rec.Code != tt.wantStatus {
			t.Errorf("%s: status %d, want %d", tt.target, rec.Code, tt.wantStatus)
			continue
		}
		if tt.wantStatus != http.StatusOK {
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("%s: Content-Type %q, want problem+json", tt.target, ct)
			}
			continue
		}
		if rec.Body.String() != string(first) {
			t.Errorf("%s: body %q", tt.target, rec.Body)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "text/plain; charset=utf-8" {
			t.Errorf("%s: Content-Type %q", tt.target, ct)
		}
		if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", tt.target)
		}
	}

	// A message pushed out of the ring buffer is gone.
	if err := sendNetSMTP(srv, nil, "a@example.com", []string{"x@example.org"}, rawMessage("third", "<3@t>")); err != nil {
		t.Fatal(err)
	}
	if rec := get(h, "/dev/outbox/1"); rec.Code != http.StatusNotFound {
		t.Errorf("evicted message: status %d, want 404", rec.Code)
	}
	if rec := get(h, fmt.Sprintf("/dev/outbox/%d", 3)); rec.Code != http.StatusOK {
		t.Errorf("newest message: status %d", rec.Code)
	}
}

func TestOutboxMethodNotAllowed(t *testing.T) {
	t.Parallel()
	srv := setup(t, smtpcapture.Options{})
	rec := httptest.NewRecorder()
	srv.OutboxHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST: status %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}
