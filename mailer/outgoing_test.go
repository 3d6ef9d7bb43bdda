package mailer_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"

	"herald/consent"
	"herald/internal/apitest"
	"herald/internal/db"
	"herald/mailer"
)

func confirmation(ws int64, requestID string) consent.Confirmation {
	return consent.Confirmation{WorkspaceID: ws, RequestID: requestID, From: "hello@acme.example", To: "ada@example.com",
		ToName: "Ada", Subject: "Please confirm your subscription to a", Text: "Confirm: https://herald.test/subscribe/confirm/x",
		HTML: `<p><a href="https://herald.test/subscribe/confirm/x">Confirm</a></p>`}
}

// TestConfirmationMailerCommit: after commit the message and its send job exist; the same
// request again returns the same message and enqueues nothing more.
func TestConfirmationMailerCommit(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWorkers: true})
	ctx := context.Background()
	cm := &mailer.ConfirmationMailer{River: b.river, MaxAttempts: 6, MessageIDDomain: "herald.test"}
	var ids []string
	for range 2 {
		err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
			id, err := cm.SendConfirmation(ctx, tx, confirmation(b.wsA, "0b0e9a52-6d1c-4a52-8a1e-6f5f0b8e1c01"))
			ids = append(ids, id)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if ids[0] != ids[1] {
		t.Fatalf("ids %v: the same request made two messages", ids)
	}
	m, err := mailer.MessageGet(ctx, b.pool, b.wsA, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if m.Stream != mailer.StreamTransactional || m.To != "ada@example.com" || m.ToName != "Ada" || m.From != "hello@acme.example" ||
		m.Status != mailer.StatusQueued || m.MessageID != m.ID+"@herald.test" || !strings.Contains(m.Text, "Confirm:") {
		t.Fatalf("message = %+v", m)
	}
	job := rivertest.RequireInserted(ctx, t, riverpgxv5.New(b.pool), &mailer.SendArgs{},
		&rivertest.RequireInsertedOpts{Queue: mailer.QueueTransactional, MaxAttempts: 6})
	if job.Args.MessageID != ids[0] || job.Args.Marketing {
		t.Fatalf("job args = %+v", job.Args)
	}
	if n := b.count(t, `SELECT count(*) FROM river_job`); n != 1 {
		t.Fatalf("%d jobs, want 1", n)
	}
}

// TestConfirmationMailerRollback: a rolled-back transaction leaves neither message nor job.
func TestConfirmationMailerRollback(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWorkers: true})
	ctx := context.Background()
	cm := &mailer.ConfirmationMailer{River: b.river, MessageIDDomain: "herald.test"}
	errRollback := errors.New("roll back")
	var id string
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		var err error
		if id, err = cm.SendConfirmation(ctx, tx, confirmation(b.wsA, "0b0e9a52-6d1c-4a52-8a1e-6f5f0b8e1c02")); err != nil {
			return err
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) || id == "" {
		t.Fatalf("err = %v, id %q", err, id)
	}
	if _, err := mailer.MessageGet(ctx, b.pool, b.wsA, id); !errors.Is(err, db.ErrNotFound) {
		t.Fatalf("message after rollback: %v", err)
	}
	if n := b.count(t, `SELECT count(*) FROM messages`) + b.count(t, `SELECT count(*) FROM river_job`); n != 0 {
		t.Fatalf("%d rows left after rollback", n)
	}
}

// TestConfirmationMailerBadSender: a workspace sender that is not an address is a 409 problem,
// and nothing is stored.
func TestConfirmationMailerBadSender(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWorkers: true})
	ctx := context.Background()
	cm := &mailer.ConfirmationMailer{River: b.river, MessageIDDomain: "herald.test"}
	c := confirmation(b.wsA, "0b0e9a52-6d1c-4a52-8a1e-6f5f0b8e1c03")
	c.From = "not an address\r\nBcc: x@evil.example"
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		_, err := cm.SendConfirmation(ctx, tx, c)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("err = %v, want a 409 problem", err)
	}
	if n := b.count(t, `SELECT count(*) FROM messages`); n != 0 {
		t.Fatalf("%d messages", n)
	}
}

var confirmURLRE = regexp.MustCompile(`https://herald\.test(/subscribe/confirm/[a-z2-7]{52})`)

// TestDoubleOptInEndToEnd: a form post sends, through the real send worker and SMTP, an email
// whose link, POSTed, grants consent, after which a marketing send to the new contact is allowed.
func TestDoubleOptInEndToEnd(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		_, _, err := consent.PurposeSave(ctx, tx, consent.Purpose{WorkspaceID: b.wsA, Name: "newsletter",
			Title: "Monthly newsletter", Notice: "One email a month about our products."})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := consent.SettingsPut(ctx, b.pool, consent.Settings{WorkspaceID: b.wsA, ConfirmFrom: "hello@acme.example"}); err != nil {
		t.Fatal(err)
	}
	settings, err := consent.SettingsGet(ctx, b.pool, b.wsA)
	if err != nil {
		t.Fatal(err)
	}
	h := &consent.Handler{DB: b.pool, Service: b.consent, BaseURL: "https://herald.test", SubscribeTTL: time.Hour,
		Mailer: &mailer.ConfirmationMailer{River: b.river, MaxAttempts: 3, MessageIDDomain: "herald.test"}}
	r := chi.NewRouter()
	r.Route("/v1", h.SubscribeRoutes)
	h.PageRoutes(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)

	res := apitest.Do(t, srv, apitest.Request{Method: "POST", Path: "/v1/subscribe", ContentType: "application/x-www-form-urlencoded",
		Body: strings.NewReader(fmt.Sprintf("form_key=%s&email=ada%%40example.com&name=Ada&purposes=newsletter", settings.FormKey))})
	if res.Status != http.StatusAccepted {
		t.Fatalf("subscribe: %d %s", res.Status, res.Raw)
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	msgs, err := b.smtp.WaitFor(wctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	m := msgs[0]
	if len(m.To) != 1 || m.To[0] != "ada@example.com" || m.From != "hello@acme.example" || !strings.Contains(m.Subject, "confirm") {
		t.Fatalf("delivered: to %v, from %q, subject %q", m.To, m.From, m.Subject)
	}
	// Undo quoted-printable soft line breaks; the link holds no other encoded characters.
	raw := strings.ReplaceAll(string(m.Raw), "=\r\n", "")
	for _, s := range []string{"Monthly newsletter", "One email a month about our products.", "acme"} {
		if !strings.Contains(raw, s) {
			t.Errorf("the email lacks %q", s)
		}
	}
	link := confirmURLRE.FindStringSubmatch(raw)
	if link == nil {
		t.Fatalf("no confirmation link in\n%s", raw)
	}
	if res := apitest.Do(t, srv, apitest.Request{Method: "POST", Path: link[1]}); res.Status != http.StatusOK {
		t.Fatalf("confirm: %d %s", res.Status, res.Raw)
	}
	var contactID int64
	if err := b.pool.QueryRow(ctx, `SELECT id FROM contacts WHERE workspace_id = $1 AND external_id = 'herald:ada@example.com'`,
		b.wsA).Scan(&contactID); err != nil {
		t.Fatal(err)
	}
	states, err := b.consent.States(ctx, b.pool, b.wsA, contactID)
	if err != nil || len(states) != 1 || !states[0].Live || states[0].Source != consent.SourceForm {
		t.Fatalf("states = %+v, %v", states, err)
	}
	// The sink has the message once DATA ends; the worker records "sent" right after the
	// relay's reply, which may come a moment later.
	var status string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		err := b.pool.QueryRow(ctx, `SELECT m.status FROM messages m JOIN subscribe_requests r ON r.message_id = m.id`).Scan(&status)
		if err == nil && status == mailer.StatusSent {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("confirmation message status %q, %v", status, err)
		}
	}
	id := b.send(t, b.keyA, "news-1", `{"stream":"marketing","contact":"herald:ada@example.com","purpose":"newsletter",
		"from":"hello@acme.example","subject":"News","text":"Hello"}`)
	b.waitStatus(t, b.keyA, id, mailer.StatusSent)
}
