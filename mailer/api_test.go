package mailer_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"

	"herald/consent"
	"herald/internal/workspace"
	"herald/mailer"
)

func TestSendBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWorkers: true})
	contactsOnly, _ := newKey(t, b.pool, "a", workspace.ScopeContactsWrite)
	ok := `{"from":"a@acme.example","to":"x@example.com","subject":"s","text":"t"}`
	if _, err := consent.EnsureTrackingPurpose(context.Background(), b.pool, b.wsA); err != nil {
		t.Fatal(err)
	}
	seedContacts(t, b, b.wsA, "news", 1)
	with := func(field, value string) string {
		return strings.Replace(ok, `"`+field+`":"`+map[string]string{"from": "a@acme.example", "to": "x@example.com", "subject": "s", "text": "t"}[field]+`"`, `"`+field+`":`+value, 1)
	}
	for _, tc := range []struct {
		name   string
		key    string
		idem   string
		body   string
		status int
		field  string
	}{
		{"no key", "", "k", ok, 401, ""},
		{"forged key", "hrld_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "k", ok, 401, ""},
		{"not a herald key", "Basic abc", "k", ok, 401, ""},
		{"wrong scope", contactsOnly, "k", ok, 403, ""},
		{"no idempotency key", b.keyA, "", ok, 400, ""},
		{"idempotency key with space", b.keyA, "a b", ok, 400, ""},
		{"idempotency key too long", b.keyA, strings.Repeat("k", 256), ok, 400, ""},
		{"malformed JSON", b.keyA, "k", `{"from":`, 400, ""},
		{"not an object", b.keyA, "k", `["x"]`, 400, ""},
		{"two objects", b.keyA, "k", ok + ok, 400, ""},
		{"empty body", b.keyA, "k", ``, 400, ""},
		{"unknown field", b.keyA, "k", strings.Replace(ok, `"text"`, `"bcc":"x@y.z","text"`, 1), 422, "bcc"},
		{"wrong type", b.keyA, "k", with("subject", `42`), 422, "subject"},
		{"no recipient", b.keyA, "k", `{"from":"a@acme.example","subject":"s","text":"t"}`, 422, "to"},
		{"invalid to", b.keyA, "k", with("to", `"not-an-address"`), 422, "to"},
		{"to with CRLF", b.keyA, "k", with("to", `"x@example.com\r\nBcc: victim@example.com"`), 422, "to"},
		{"to with two addresses", b.keyA, "k", with("to", `"x@example.com, y@example.com"`), 422, "to"},
		{"to name with encoded CRLF", b.keyA, "k", with("to", `"=?utf-8?q?Eve=0D=0ABcc:_v@example.com?= <x@example.com>"`), 422, "to"},
		{"to and contact", b.keyA, "k", strings.Replace(ok, `"to"`, `"contact":"c1","to"`, 1), 422, "to"},
		{"unknown contact", b.keyA, "k", `{"from":"a@acme.example","contact":"nobody","subject":"s","text":"t"}`, 422, "contact"},
		{"no from", b.keyA, "k", `{"to":"x@example.com","subject":"s","text":"t"}`, 422, "from"},
		{"from with CRLF name", b.keyA, "k", with("from", `"Acme\r\nBcc: v@example.com <a@acme.example>"`), 422, "from"},
		{"bad reply_to", b.keyA, "k", strings.Replace(ok, `"text"`, `"reply_to":"nope","text"`, 1), 422, "reply_to"},
		{"subject with CRLF", b.keyA, "k", with("subject", `"hi\r\nBcc: v@example.com"`), 422, "subject"},
		{"subject with LF", b.keyA, "k", with("subject", `"hi\nthere"`), 422, "subject"},
		{"empty subject", b.keyA, "k", with("subject", `""`), 422, "subject"},
		{"subject too long", b.keyA, "k", with("subject", `"`+strings.Repeat("s", 999)+`"`), 422, "subject"},
		{"no body", b.keyA, "k", `{"from":"a@acme.example","to":"x@example.com","subject":"s"}`, 422, "html"},
		{"header not allowed", b.keyA, "k", strings.Replace(ok, `"text"`, `"headers":{"Bcc":"v@example.com"},"text"`, 1), 422, "headers"},
		{"header From not allowed", b.keyA, "k", strings.Replace(ok, `"text"`, `"headers":{"from":"v@example.com"},"text"`, 1), 422, "headers"},
		{"header value CRLF", b.keyA, "k", strings.Replace(ok, `"text"`, `"headers":{"X-Ref":"a\r\nBcc: v@example.com"},"text"`, 1), 422, "headers"},
		{"header name CRLF", b.keyA, "k", strings.Replace(ok, `"text"`, `"headers":{"X-Ref\r\nBcc":"v"},"text"`, 1), 422, "headers"},
		{"reserved header", b.keyA, "k", strings.Replace(ok, `"text"`, `"headers":{"X-Herald-Stream":"marketing"},"text"`, 1), 422, "headers"},
		{"data without template", b.keyA, "k", strings.Replace(ok, `"text"`, `"data":{"a":1},"text"`, 1), 422, "data"},
		{"unknown template", b.keyA, "k", `{"from":"a@acme.example","to":"x@example.com","template":"nope"}`, 422, "template"},
		{"template and subject", b.keyA, "k", strings.Replace(ok, `"text"`, `"template":"t","text"`, 1), 422, "template"},
		{"marketing for the tracking purpose", b.keyA, "k", `{"stream":"marketing","purpose":"tracking","contact":"c1","from":"a@acme.example","subject":"s","text":"t"}`, 422, "purpose"},
		{"marketing for an unknown purpose", b.keyA, "k", `{"stream":"marketing","purpose":"nope","contact":"c1","from":"a@acme.example","subject":"s","text":"t"}`, 422, "purpose"},
		{"body over 1 MiB", b.keyA, "k", with("text", `"`+strings.Repeat("a", 1<<20)+`"`), 413, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := b.do(t, "POST", "/v1/messages", tc.key, tc.idem, tc.body)
			if res.Status != tc.status {
				t.Fatalf("status = %d, want %d: %s", res.Status, tc.status, res.Raw)
			}
			if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if res.Body["status"] != float64(tc.status) || res.Body["title"] == "" {
				t.Errorf("problem = %v", res.Body)
			}
			if tc.field != "" && res.Body["field"] != tc.field {
				t.Errorf("field = %v, want %s (%s)", res.Body["field"], tc.field, res.Body["detail"])
			}
		})
	}
	if n := b.count(t, "SELECT count(*) FROM messages"); n != 0 {
		t.Errorf("bad requests wrote %d messages", n)
	}
	if n := b.count(t, "SELECT count(*) FROM river_job"); n != 0 {
		t.Errorf("bad requests enqueued %d jobs", n)
	}
}

func TestMessagesAreIsolatedByWorkspace(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWorkers: true})
	id := b.send(t, b.keyA, "k", `{"from":"a@acme.example","to":"x@example.com","subject":"s","text":"t"}`)
	if res := b.do(t, "GET", "/v1/messages/"+id, b.keyA, "", ""); res.Status != http.StatusOK || res.Body["status"] != "queued" {
		t.Fatalf("own message: %d %s", res.Status, res.Raw)
	}
	for _, path := range []string{"/v1/messages/" + id, "/v1/messages/not-a-uuid", "/v1/messages/00000000-0000-4000-8000-000000000000", "/v1/messages/" + strings.ToUpper(id)} {
		res := b.do(t, "GET", path, b.keyB, "", "")
		if res.Status != http.StatusNotFound || res.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("GET %s with b's key: %d %s", path, res.Status, res.Raw)
		}
	}
	if res := b.do(t, "GET", "/v1/messages/"+id, "", "", ""); res.Status != http.StatusUnauthorized {
		t.Errorf("GET without key: %d", res.Status)
	}
}

func TestSendEnqueuesOneJobForTheMessage(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWorkers: true, maxAttempts: 7})
	id := b.send(t, b.keyA, "k", `{"from":"a@acme.example","to":"x@example.com","subject":"s","text":"t"}`)
	job := rivertest.RequireInserted(context.Background(), t, riverpgxv5.New(b.pool), &mailer.SendArgs{},
		&rivertest.RequireInsertedOpts{Queue: mailer.QueueTransactional, MaxAttempts: 7})
	if job.Args.MessageID != id {
		t.Fatalf("job for %s, want %s", job.Args.MessageID, id)
	}
	if got := testutil.ToFloat64(b.metrics.Accepted.WithLabelValues("transactional")); got != 1 {
		t.Errorf("herald_messages_accepted_total = %v", got)
	}
}
