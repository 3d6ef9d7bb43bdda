package mailer_test

import (
	"context"
	"mime"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"herald/internal/smtpcapture"
)

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestSendEndToEnd(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	id := b.send(t, b.keyA, "k1", mustJSON(map[string]any{
		"from":     "Acme Support <support@acme.example>",
		"to":       "Zoë Zed <Zoe@Bücher.Example>",
		"reply_to": "help@acme.example",
		"subject":  "Grüße — your invoice ✓",
		"html":     `<p>Hello <b>Zoë</b></p><script>alert(1)</script><a href="https://acme.example/i/1" onclick="x()">invoice</a>`,
		"text":     "Hello Zoë\nhttps://acme.example/i/1",
		"headers":  map[string]string{"X-Entity-Ref-ID": "inv-1", "in-reply-to": "<abc@acme.example>"},
	}))
	msgs, err := b.smtp.WaitFor(waitCtx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	m := msgs[0]
	if m.From != "support@acme.example" || len(m.To) != 1 || m.To[0] != "Zoe@xn--bcher-kva.example" {
		t.Fatalf("envelope = %q -> %q", m.From, m.To)
	}
	if m.Subject != "Grüße — your invoice ✓" {
		t.Errorf("subject = %q", m.Subject)
	}
	var dbMsgID string
	if err := b.pool.QueryRow(context.Background(), "SELECT message_id FROM messages WHERE id = $1", id).Scan(&dbMsgID); err != nil {
		t.Fatal(err)
	}
	if m.MessageID != "<"+dbMsgID+">" || !strings.HasSuffix(dbMsgID, "@herald.test") {
		t.Errorf("Message-ID = %q, stored %q", m.MessageID, dbMsgID)
	}
	for k, want := range map[string]string{"X-Entity-Ref-Id": "inv-1", "In-Reply-To": "<abc@acme.example>", "Reply-To": "<help@acme.example>"} {
		if got := m.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	dec := new(mime.WordDecoder)
	if to, _ := dec.DecodeHeader(m.Header.Get("To")); !strings.Contains(to, "Zoë Zed") {
		t.Errorf("To header = %q", to)
	}
	raw := string(m.Raw)
	if !strings.Contains(raw, "multipart/alternative") || !strings.Contains(raw, "text/plain") || !strings.Contains(raw, "text/html") {
		t.Errorf("message is not text + HTML alternative:\n%s", raw)
	}
	if strings.Contains(raw, "<script") || strings.Contains(raw, "onclick") {
		t.Errorf("script survived in HTML body:\n%s", raw)
	}
	res := b.waitStatus(t, b.keyA, id, "sent")
	if got := strings.Join(history(res), ","); got != "queued,sending,sent" {
		t.Errorf("history = %s", got)
	}
	hist := res.Body["history"].([]any)
	if code := hist[2].(map[string]any)["smtp_code"]; code != float64(250) {
		t.Errorf("sent event smtp_code = %v", code)
	}
	b.waitCount(t, 1, "SELECT count(*) FROM river_job WHERE kind = 'mailer.send' AND state = 'completed'")
	if got := testutil.ToFloat64(b.metrics.Messages.WithLabelValues("transactional", "sent")); got != 1 {
		t.Errorf(`herald_messages_total{outcome="sent"} = %v`, got)
	}
	if got := testutil.CollectAndCount(b.metrics.SendDuration); got != 1 {
		t.Errorf("herald_smtp_send_duration_seconds series = %d", got)
	}
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	body := `{"from":"a@acme.example","to":"x@example.com","subject":"hi","text":"one"}`
	first := b.do(t, "POST", "/v1/messages", b.keyA, "same", body)
	again := b.do(t, "POST", "/v1/messages", b.keyA, "same", body)
	if first.Status != 202 || again.Status != 202 || first.Body["id"] != again.Body["id"] || again.Body["status"] != "queued" {
		t.Fatalf("replay: %d %v / %d %v", first.Status, first.Body, again.Status, again.Body)
	}
	if again.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay lacks Idempotent-Replayed header")
	}
	other := b.do(t, "POST", "/v1/messages", b.keyA, "same", strings.Replace(body, "one", "two", 1))
	if other.Status != http.StatusUnprocessableEntity || other.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("same key, other body: %d %s", other.Status, other.Raw)
	}
	// The same key in another workspace is another message.
	inB := b.do(t, "POST", "/v1/messages", b.keyB, "same", body)
	if inB.Status != 202 || inB.Body["id"] == first.Body["id"] {
		t.Fatalf("workspace b reusing a's key: %d %v", inB.Status, inB.Body)
	}
	// Concurrent requests with one key make one message.
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := b.do(t, "POST", "/v1/messages", b.keyA, "race", body)
			if res.Status == 202 {
				ids[i] = res.Body["id"].(string)
			}
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id == "" || id != ids[0] {
			t.Fatalf("concurrent same-key ids = %v", ids)
		}
	}
	if _, err := b.smtp.WaitFor(waitCtx(t), 3); err != nil {
		t.Fatal(err)
	}
	b.waitStatus(t, b.keyA, ids[0], "sent")
	if n := b.count(t, "SELECT count(*) FROM messages"); n != 3 {
		t.Errorf("messages stored = %d, want 3", n)
	}
	if n := b.count(t, "SELECT count(*) FROM river_job"); n != 3 {
		t.Errorf("send jobs = %d, want 3", n)
	}
	time.Sleep(100 * time.Millisecond) // nothing further may arrive
	if n := b.smtp.Count(); n != 3 {
		t.Errorf("SMTP received %d messages, want 3", n)
	}
}

func TestTemporaryFailureThenSuccess(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seenIDs []string
	b := setup(t, setupOpts{dataHook: func(m *smtpcapture.Message) error {
		mu.Lock()
		defer mu.Unlock()
		seenIDs = append(seenIDs, m.MessageID)
		if len(seenIDs) <= 2 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}
		return nil
	}})
	id := b.send(t, b.keyA, "k", `{"from":"a@acme.example","to":"x@example.com","subject":"retry","text":"t"}`)
	res := b.waitStatus(t, b.keyA, id, "sent")
	if got := strings.Join(history(res), ","); got != "queued,sending,deferred,sending,deferred,sending,sent" {
		t.Errorf("history = %s", got)
	}
	d := res.Body["history"].([]any)[2].(map[string]any)
	if d["smtp_code"] != float64(451) || d["enhanced_code"] != "4.3.0" || !strings.Contains(d["detail"].(string), "try later") {
		t.Errorf("deferred event = %v", d)
	}
	if strings.Contains(d["detail"].(string), "x@example.com") {
		t.Errorf("SMTP reply stored with the recipient address: %v", d["detail"])
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seenIDs) != 3 || seenIDs[0] != seenIDs[1] || seenIDs[1] != seenIDs[2] || seenIDs[0] == "" {
		t.Errorf("Message-IDs across attempts = %v, want one reused", seenIDs)
	}
}

func TestConnectionDropIsRetried(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	b := setup(t, setupOpts{dataHook: func(*smtpcapture.Message) error {
		if n.Add(1) == 1 {
			return smtpcapture.ErrDropConnection
		}
		return nil
	}})
	id := b.send(t, b.keyA, "k", `{"from":"a@acme.example","to":"x@example.com","subject":"drop","text":"t"}`)
	res := b.waitStatus(t, b.keyA, id, "sent")
	if got := strings.Join(history(res), ","); got != "queued,sending,deferred,sending,sent" {
		t.Errorf("history = %s", got)
	}
	if b.smtp.Count() != 1 {
		t.Errorf("received %d, want 1", b.smtp.Count())
	}
}

func TestRetriesExhausted(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{maxAttempts: 3, dataHook: func(*smtpcapture.Message) error {
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "busy"}
	}})
	id := b.send(t, b.keyA, "k", `{"from":"a@acme.example","to":"x@example.com","subject":"busy","text":"t"}`)
	res := b.waitStatus(t, b.keyA, id, "failed")
	if !strings.Contains(res.Body["status_reason"].(string), "gave up after 3 attempts") {
		t.Errorf("status_reason = %v", res.Body["status_reason"])
	}
	if n := b.count(t, "SELECT count(*) FROM suppressions"); n != 0 {
		t.Errorf("temporary failures suppressed the address")
	}
	b.waitCount(t, 1, "SELECT count(*) FROM river_job WHERE state = 'completed'")
}

func TestHardBounceSuppresses(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{rcptHook: func(rcpt string) error {
		switch rcpt {
		case "gone@example.com":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		case "policy@example.com":
			return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "rejected by policy"}
		}
		return nil
	}})
	bounce := b.send(t, b.keyA, "1", `{"from":"a@acme.example","to":"gone@example.com","subject":"s","text":"t"}`)
	res := b.waitStatus(t, b.keyA, bounce, "failed")
	last := res.Body["history"].([]any)[2].(map[string]any)
	if last["smtp_code"] != float64(550) || last["enhanced_code"] != "5.1.1" {
		t.Errorf("failed event = %v", last)
	}
	if sp, err := b.consent.SuppressionGet(context.Background(), b.pool, b.wsA, "gone@example.com"); err != nil || sp.Reason != "hard_bounce" {
		t.Fatalf("hard bounce not suppressed: %+v %v", sp, err)
	}
	policy := b.send(t, b.keyA, "2", `{"from":"a@acme.example","to":"policy@example.com","subject":"s","text":"t"}`)
	b.waitStatus(t, b.keyA, policy, "failed")
	if _, err := b.consent.SuppressionGet(context.Background(), b.pool, b.wsA, "policy@example.com"); err == nil {
		t.Errorf("a 5.7.1 policy rejection suppressed the address")
	}
	attempts := b.smtp.Attempts()
	// A later message to the bounced address is suppressed before SMTP, in this workspace only.
	again := b.send(t, b.keyA, "3", `{"from":"a@acme.example","to":"gone@example.com","subject":"s","text":"t"}`)
	res = b.waitStatus(t, b.keyA, again, "suppressed")
	if res.Body["status_reason"] != "hard_bounce" {
		t.Errorf("suppressed reason = %v", res.Body["status_reason"])
	}
	if b.smtp.Attempts() != attempts {
		t.Errorf("suppressed message reached SMTP")
	}
	if got := strings.Join(history(res), ","); got != "queued,sending,suppressed" {
		t.Errorf("history = %s", got)
	}
	for outcome, want := range map[string]float64{"failed": 2, "suppressed": 1, "sent": 0} {
		if got := testutil.ToFloat64(b.metrics.Messages.WithLabelValues("transactional", outcome)); got != want {
			t.Errorf("herald_messages_total{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}
	inB := b.send(t, b.keyB, "3", `{"from":"b@b.example","to":"gone@example.com","subject":"s","text":"t"}`)
	b.waitStatus(t, b.keyB, inB, "failed") // b has its own list: it tries, and bounces itself
}
