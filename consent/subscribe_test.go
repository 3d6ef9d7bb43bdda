package consent_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/riverqueue/river"

	"herald/consent"
	"herald/internal/apitest"
	"herald/internal/contacts"
)

// confirmMailer is the test's consent.Mailer: it records each confirmation and returns a fresh id.
// (The real one, mailer.ConfirmationMailer, is tested in package mailer, which imports this one.)
type confirmMailer struct {
	mu   sync.Mutex
	sent []consent.Confirmation
}

func (m *confirmMailer) SendConfirmation(_ context.Context, _ pgx.Tx, c consent.Confirmation) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sent = append(m.sent, c)
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

func (m *confirmMailer) all() []consent.Confirmation {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]consent.Confirmation(nil), m.sent...)
}

// subClock is a settable clock shared by the handler's goroutines and the test.
type subClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *subClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *subClock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

// subBundle is a workspace with a double opt-in form, two purposes, and the HTTP endpoints.
type subBundle struct {
	*bundle
	svc     *consent.Service
	clock   *subClock
	mailer  *confirmMailer
	srv     *httptest.Server
	ws      int64
	formKey string
	other   int64 // a second workspace, with its own purpose "partners"
}

type subOpts struct {
	limits   *consent.Limits
	noSender bool
}

func subSetup(t *testing.T, o subOpts) *subBundle {
	t.Helper()
	ctx := context.Background()
	b := &subBundle{bundle: setup(t), clock: &subClock{t: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}, mailer: &confirmMailer{}}
	b.svc = &consent.Service{Keys: b.bundle.svc.Keys, Metrics: b.bundle.svc.Metrics,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: b.clock.Now}
	b.ws, b.other = b.ensureWorkspace(t, "acme"), b.ensureWorkspace(t, "globex")
	b.purpose(t, b.ws, "newsletter")
	b.purpose(t, b.ws, "product-updates")
	b.purpose(t, b.other, "partners")
	for _, id := range []int64{b.ws, b.other} {
		s, err := consent.SettingsGet(ctx, b.pool, id)
		if err != nil {
			t.Fatal(err)
		}
		if !o.noSender {
			if _, err := consent.SettingsPut(ctx, b.pool, consent.Settings{WorkspaceID: id, ConfirmFrom: "hello@acme.example"}); err != nil {
				t.Fatal(err)
			}
		}
		if id == b.ws {
			b.formKey = s.FormKey
		}
	}
	if o.limits != nil {
		o.limits.Now = b.clock.Now
	}
	h := &consent.Handler{DB: b.pool, Service: b.svc, Logger: b.svc.Logger, BaseURL: "https://herald.test",
		Mailer: b.mailer, SubscribeTTL: 72 * time.Hour, Limits: o.limits}
	r := chi.NewRouter()
	r.Route("/v1", h.SubscribeRoutes)
	h.PageRoutes(r)
	b.srv = httptest.NewServer(r)
	t.Cleanup(b.srv.Close)
	return b
}

func (b *subBundle) postJSON(t *testing.T, body string) apitest.Response {
	t.Helper()
	return apitest.Do(t, b.srv, apitest.Request{Method: "POST", Path: "/v1/subscribe", ContentType: "application/json",
		Body: strings.NewReader(body)})
}

func (b *subBundle) postForm(t *testing.T, form url.Values) apitest.Response {
	t.Helper()
	return apitest.Do(t, b.srv, apitest.Request{Method: "POST", Path: "/v1/subscribe",
		ContentType: "application/x-www-form-urlencoded", Body: strings.NewReader(form.Encode())})
}

func (b *subBundle) subscribeJSON(email string, purposes ...string) string {
	q := make([]string, len(purposes))
	for i, p := range purposes {
		q[i] = `"` + p + `"`
	}
	return fmt.Sprintf(`{"form_key":%q,"email":%q,"name":"Ada Lovelace","purposes":[%s]}`, b.formKey, email, strings.Join(q, ","))
}

// page requests a confirmation page with a browser's headers.
func (b *subBundle) page(t *testing.T, method, token string) apitest.Response {
	t.Helper()
	return apitest.Do(t, b.srv, apitest.Request{Method: method, Path: "/subscribe/confirm/" + token,
		Header: http.Header{"User-Agent": {"Mozilla/5.0 (test)"}}})
}

var confirmLinkRE = regexp.MustCompile(`https://herald\.test/subscribe/confirm/([a-z2-7]+)`)

// lastToken is the token in the link of the latest confirmation email.
func (b *subBundle) lastToken(t *testing.T) string {
	t.Helper()
	sent := b.mailer.all()
	if len(sent) == 0 {
		t.Fatal("no confirmation sent")
	}
	m := confirmLinkRE.FindStringSubmatch(sent[len(sent)-1].Text)
	if m == nil {
		t.Fatalf("no confirmation link in %q", sent[len(sent)-1].Text)
	}
	return m[1]
}

func (b *subBundle) outcome(name string) float64 {
	return testutil.ToFloat64(b.svc.Metrics.SubscribeRequests.WithLabelValues(name))
}

// nothingRecorded checks that no request, email, contact or ledger event exists.
func (b *subBundle) nothingRecorded(t *testing.T) {
	t.Helper()
	if n := b.count(t, `SELECT count(*) FROM subscribe_requests`); n != 0 {
		t.Errorf("%d subscribe requests recorded", n)
	}
	if n := len(b.mailer.all()); n != 0 {
		t.Errorf("%d confirmation emails sent", n)
	}
	if n := b.count(t, `SELECT count(*) FROM consent_events`); n != 0 {
		t.Errorf("%d consent events recorded", n)
	}
	if n := b.count(t, `SELECT count(*) FROM contacts`); n != 0 {
		t.Errorf("%d contacts created", n)
	}
}

func requireSubscribePageHeaders(t *testing.T, res apitest.Response) {
	t.Helper()
	want := map[string]string{
		"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
		"Cache-Control":           "no-store",
		"Referrer-Policy":         "no-referrer",
		"Content-Type":            "text/html; charset=utf-8",
	}
	for k, v := range want {
		if got := res.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

func TestSubscribeAndConfirm(t *testing.T) {
	t.Parallel()
	b := subSetup(t, subOpts{})
	ctx := context.Background()

	res := b.postJSON(t, b.subscribeJSON("Ada@Example.COM", "newsletter", "product-updates", "newsletter"))
	if res.Status != http.StatusAccepted || res.Body["status"] != "pending" {
		t.Fatalf("subscribe: %d %s", res.Status, res.Raw)
	}
	sent := b.mailer.all()
	if len(sent) != 1 {
		t.Fatalf("%d confirmations sent, want 1", len(sent))
	}
	c := sent[0]
	if c.WorkspaceID != b.ws || c.To != "Ada@example.com" || c.ToName != "Ada Lovelace" || c.From != "hello@acme.example" ||
		!strings.Contains(c.Subject, "acme") || c.RequestID == "" {
		t.Fatalf("confirmation = %+v", c)
	}
	for _, s := range []string{"acme", "The newsletter", "We send you newsletter.", "The product-updates", "We send you product-updates."} {
		if !strings.Contains(c.Text, s) || !strings.Contains(c.HTML, s) {
			t.Errorf("confirmation text or HTML lacks %q", s)
		}
	}
	token := b.lastToken(t)
	if len(token) != 52 || !strings.Contains(c.HTML, "https://herald.test/subscribe/confirm/"+token) {
		t.Fatalf("token %q (len %d) or HTML link wrong", token, len(token))
	}

	// Stored: the token only as its SHA-256, the notice versions of the moment, the client.
	var hash []byte
	var purposes []string
	var versions []int32
	var ip, msgID string
	err := b.pool.QueryRow(ctx, `SELECT token_hash, purposes, notice_versions, ip, message_id::text FROM subscribe_requests WHERE id = $1`,
		c.RequestID).Scan(&hash, &purposes, &versions, &ip, &msgID)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(token))
	if string(hash) != string(sum[:]) || strings.Join(purposes, ",") != "newsletter,product-updates" ||
		len(versions) != 2 || versions[0] != 1 || ip != "127.0.0.1" || msgID == "" {
		t.Fatalf("stored request: hash ok %v, purposes %v, versions %v, ip %q, message %q", string(hash) == string(sum[:]), purposes, versions, ip, msgID)
	}
	if n := b.count(t, `SELECT count(*) FROM subscribe_requests r WHERE position($1 in r::text) > 0`, token); n != 0 {
		t.Fatal("the token is stored in clear")
	}
	// A notice changed after the request does not change what the person is agreeing to.
	err = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		_, _, err := consent.PurposeSave(ctx, tx, consent.Purpose{WorkspaceID: b.ws, Name: "newsletter", Title: "The newsletter", Notice: "Changed."})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	// GET shows the button and changes nothing, however often a scanner fetches it.
	for range 2 {
		res = b.page(t, "GET", token)
		if res.Status != http.StatusOK || !strings.Contains(string(res.Raw), `<form method="post" action="`+token+`">`) ||
			!strings.Contains(string(res.Raw), "The product-updates") {
			t.Fatalf("GET confirm: %d %s", res.Status, res.Raw)
		}
		requireSubscribePageHeaders(t, res)
	}
	if n := b.count(t, `SELECT count(*) FROM consent_events`) + b.count(t, `SELECT count(*) FROM contacts`) +
		b.count(t, `SELECT count(*) FROM subscribe_requests WHERE confirmed_at IS NOT NULL`); n != 0 {
		t.Fatal("GET of the confirmation link changed something")
	}

	b.clock.Add(time.Hour)
	res = b.page(t, "POST", strings.ToUpper(token)) // case is folded
	if res.Status != http.StatusOK || !strings.Contains(string(res.Raw), "Subscription confirmed") {
		t.Fatalf("POST confirm: %d %s", res.Status, res.Raw)
	}
	requireSubscribePageHeaders(t, res)
	ct, err := contacts.Get(ctx, b.pool, b.ws, "herald:Ada@example.com")
	if err != nil || ct.Name != "Ada Lovelace" || ct.Email != "Ada@example.com" {
		t.Fatalf("contact = %+v, %v", ct, err)
	}
	hist, err := b.svc.History(ctx, b.pool, b.ws, ct.ID)
	if err != nil || len(hist) != 2 {
		t.Fatalf("history = %d events, %v", len(hist), err)
	}
	for i, e := range hist {
		if e.Purpose != []string{"newsletter", "product-updates"}[i] || e.Action != consent.ActionGranted ||
			e.Source != consent.SourceForm || e.LawfulBasis != consent.BasisConsent || e.NoticeVersion != 1 ||
			e.Actor != "recipient" || !e.OccurredAt.Equal(b.clock.Now()) {
			t.Errorf("event %d = %+v", i, e)
		}
		p := e.Proof
		if p["double_opt_in"] != "confirmed" || p["request_id"] != c.RequestID || p["requested_at"] != "2026-11-24T12:00:00Z" ||
			p["confirmed_at"] != "2026-11-24T13:00:00Z" || len(p["request_ip_hash"]) != 64 {
			t.Errorf("proof %d = %v", i, p)
		}
		if ev := e.Evidence; ev == nil || ev.IP != "127.0.0.1" || ev.UserAgent != "Mozilla/5.0 (test)" || ev.Address != "Ada@example.com" {
			t.Errorf("evidence %d = %+v", i, e.Evidence)
		}
	}
	states, err := b.svc.States(ctx, b.pool, b.ws, ct.ID)
	if err != nil || len(states) != 2 || !states[0].Live || !states[1].Live {
		t.Fatalf("states = %+v, %v", states, err)
	}
	if n, err := consent.Verify(ctx, b.pool, b.ws); err != nil || n != 2 {
		t.Fatalf("verify: %d, %v", n, err)
	}

	// A second confirmation (a double click, a reload) records nothing more.
	res = b.page(t, "POST", token)
	if res.Status != http.StatusOK || !strings.Contains(string(res.Raw), "Already confirmed") {
		t.Fatalf("second POST: %d %s", res.Status, res.Raw)
	}
	if n := b.count(t, `SELECT count(*) FROM consent_events`); n != 2 {
		t.Fatalf("%d events after a second confirmation, want 2", n)
	}
	if b.outcome("sent") != 1 || b.outcome("confirmed") != 1 {
		t.Fatalf("outcomes: sent %v, confirmed %v", b.outcome("sent"), b.outcome("confirmed"))
	}
}

func TestSubscribeFormPost(t *testing.T) {
	t.Parallel()
	b := subSetup(t, subOpts{})
	res := b.postForm(t, url.Values{"form_key": {b.formKey}, "email": {"grace@example.com"}, "name": {"Grace"},
		"purposes": {"newsletter", "product-updates"}, "submit": {"Subscribe"}})
	if res.Status != http.StatusAccepted || !strings.Contains(string(res.Raw), "Check your inbox") {
		t.Fatalf("form post: %d %s", res.Status, res.Raw)
	}
	requireSubscribePageHeaders(t, res)
	sent := b.mailer.all()
	if len(sent) != 1 || sent[0].To != "grace@example.com" || !strings.Contains(sent[0].Text, "The product-updates") {
		t.Fatalf("sent = %+v", sent)
	}
	// PHP-style purposes[] works too.
	res = b.postForm(t, url.Values{"form_key": {b.formKey}, "email": {"linus@example.com"}, "purposes[]": {"newsletter"}})
	if res.Status != http.StatusAccepted || len(b.mailer.all()) != 2 {
		t.Fatalf("purposes[]: %d %s", res.Status, res.Raw)
	}
}

// TestSubscribeHostile: every bad request gets a clear 4xx problem, and nothing is recorded or sent.
func TestSubscribeHostile(t *testing.T) {
	t.Parallel()
	b := subSetup(t, subOpts{limits: &consent.Limits{PerIP: consent.Rate{PerMinute: 1000, Burst: 1000}}})
	big := `{"form_key":"` + b.formKey + `","email":"a@example.com","purposes":["newsletter"],"name":"` + strings.Repeat("a", 17<<10) + `"}`
	for _, tc := range []struct {
		name, body, form string
		status           int
		field, detail    string
	}{
		{name: "unknown form key", body: `{"form_key":"fk_nope","email":"a@example.com","purposes":["newsletter"]}`, status: 404},
		{name: "empty form key", body: `{"email":"a@example.com","purposes":["newsletter"]}`, status: 404},
		{name: "form key with CRLF", body: `{"form_key":"fk\r\nX: y","email":"a@example.com","purposes":["newsletter"]}`, status: 404},
		{name: "unknown purpose", body: b.subscribeJSON("a@example.com", "newsletter", "nope"), status: 422, field: "purposes", detail: "nope"},
		{name: "another workspace's purpose", body: b.subscribeJSON("a@example.com", "partners"), status: 422, field: "purposes", detail: "partners"},
		{name: "script as purpose", body: b.subscribeJSON("a@example.com", "<script>alert(1)</script>"), status: 422, field: "purposes"},
		{name: "no purposes", body: `{"form_key":"` + b.formKey + `","email":"a@example.com","purposes":[]}`, status: 422, field: "purposes"},
		{name: "CRLF in name", body: `{"form_key":"` + b.formKey + `","email":"a@example.com","name":"Ada\r\nBcc: x@evil.example","purposes":["newsletter"]}`, status: 422, field: "name"},
		{name: "script in name", body: `{"form_key":"` + b.formKey + `","email":"a@example.com","name":"<script>alert(1)</script>","purposes":["newsletter"]}`, status: 422, field: "name"},
		{name: "long name", body: `{"form_key":"` + b.formKey + `","email":"a@example.com","name":"` + strings.Repeat("é", 201) + `","purposes":["newsletter"]}`, status: 422, field: "name"},
		{name: "CRLF in email", body: b.subscribeJSON("a@example.com\r\nBcc: x@evil.example", "newsletter"), status: 422, field: "email"},
		{name: "display name as email", body: b.subscribeJSON("Ada <a@example.com>", "newsletter"), status: 422, field: "email"},
		{name: "unknown field", body: `{"form_key":"` + b.formKey + `","email":"a@example.com","purposes":["newsletter"],"admin":true}`, status: 422, field: "admin"},
		{name: "oversized JSON", body: big, status: 413},
		{name: "oversized form", form: "form_key=" + b.formKey + "&email=a%40example.com&purposes=newsletter&name=" + strings.Repeat("a", 17<<10), status: 413},
		{name: "CRLF in form name", form: "form_key=" + b.formKey + "&email=a%40example.com&purposes=newsletter&name=A%0D%0AB", status: 422, field: "name"},
		{name: "form without purposes", form: "form_key=" + b.formKey + "&email=a%40example.com", status: 422, field: "purposes"},
		{name: "malformed JSON", body: `{"form_key":`, status: 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var res apitest.Response
			if tc.form != "" {
				res = apitest.Do(t, b.srv, apitest.Request{Method: "POST", Path: "/v1/subscribe",
					ContentType: "application/x-www-form-urlencoded", Body: strings.NewReader(tc.form)})
			} else {
				res = b.postJSON(t, tc.body)
			}
			p := res.RequireProblem(t, tc.status, "")
			if p.Field != tc.field || !strings.Contains(p.Detail, tc.detail) {
				t.Fatalf("problem = %+v, want field %q and detail naming %q", p, tc.field, tc.detail)
			}
		})
	}
	res := apitest.Do(t, b.srv, apitest.Request{Method: "POST", Path: "/v1/subscribe", ContentType: "text/plain",
		Body: strings.NewReader("hello")})
	res.RequireProblem(t, http.StatusUnsupportedMediaType, "")
	b.nothingRecorded(t)
}

func TestSubscribeNoSender(t *testing.T) {
	t.Parallel()
	b := subSetup(t, subOpts{noSender: true})
	p := b.postJSON(t, b.subscribeJSON("a@example.com", "newsletter")).RequireProblem(t, http.StatusConflict, "")
	if !strings.Contains(p.Detail, "no confirmation sender") {
		t.Fatalf("problem = %+v", p)
	}
	b.nothingRecorded(t)
}

func TestSubscribeRateLimit(t *testing.T) {
	t.Parallel()
	b := subSetup(t, subOpts{limits: &consent.Limits{PerIP: consent.Rate{PerMinute: 6, Burst: 3}}})
	// Distinct addresses, so the per-address cap is not what stops them.
	for i := range 3 {
		if res := b.postJSON(t, b.subscribeJSON(fmt.Sprintf("p%d@example.com", i), "newsletter")); res.Status != http.StatusAccepted {
			t.Fatalf("request %d: %d %s", i, res.Status, res.Raw)
		}
	}
	res := b.postJSON(t, b.subscribeJSON("p3@example.com", "newsletter"))
	res.RequireProblem(t, http.StatusTooManyRequests, "")
	if ra := res.Header.Get("Retry-After"); ra != "10" {
		t.Fatalf("Retry-After = %q, want 10 (one token at 6 a minute)", ra)
	}
	// Even a bad request is throttled: the limit comes before any work.
	b.postJSON(t, `{}`).RequireProblem(t, http.StatusTooManyRequests, "")
	if len(b.mailer.all()) != 3 || b.outcome("throttled") != 2 {
		t.Fatalf("sent %d, throttled %v", len(b.mailer.all()), b.outcome("throttled"))
	}
	b.clock.Add(10 * time.Second)
	if res := b.postJSON(t, b.subscribeJSON("p3@example.com", "newsletter")); res.Status != http.StatusAccepted {
		t.Fatalf("after refill: %d %s", res.Status, res.Raw)
	}
}

func TestSubscribeFormKeyLimit(t *testing.T) {
	t.Parallel()
	b := subSetup(t, subOpts{limits: &consent.Limits{PerFormKey: consent.Rate{PerMinute: 60, Burst: 2}}})
	for i := range 2 {
		if res := b.postJSON(t, b.subscribeJSON(fmt.Sprintf("p%d@example.com", i), "newsletter")); res.Status != http.StatusAccepted {
			t.Fatalf("request %d: %d %s", i, res.Status, res.Raw)
		}
	}
	res := b.postJSON(t, b.subscribeJSON("p2@example.com", "newsletter"))
	res.RequireProblem(t, http.StatusTooManyRequests, "")
	if res.Header.Get("Retry-After") != "1" {
		t.Fatalf("Retry-After = %q", res.Header.Get("Retry-After"))
	}
}

// TestSubscribeCap: a fourth request for one address within 24 hours answers the same 202 and
// sends nothing; a day later the address can be asked again.
func TestSubscribeCap(t *testing.T) {
	t.Parallel()
	b := subSetup(t, subOpts{})
	body := b.subscribeJSON("target@example.com", "newsletter")
	for i := range 5 {
		res := b.postJSON(t, body)
		if res.Status != http.StatusAccepted || res.Body["status"] != "pending" {
			t.Fatalf("request %d: %d %s", i, res.Status, res.Raw)
		}
		b.clock.Add(time.Minute)
	}
	// Another spelling of the same address counts against the same cap.
	if res := b.postJSON(t, b.subscribeJSON("target@EXAMPLE.com", "newsletter")); res.Status != http.StatusAccepted {
		t.Fatalf("%d %s", res.Status, res.Raw)
	}
	if n := len(b.mailer.all()); n != 3 || b.outcome("capped") != 3 {
		t.Fatalf("sent %d, capped %v; want 3 and 3", n, b.outcome("capped"))
	}
	// Other addresses are not affected.
	if b.postJSON(t, b.subscribeJSON("other@example.com", "newsletter")); len(b.mailer.all()) != 4 {
		t.Fatal("another address was capped")
	}
	b.clock.Add(24 * time.Hour)
	b.postJSON(t, body)
	if n := len(b.mailer.all()); n != 5 {
		t.Fatalf("after a day: sent %d, want 5", n)
	}
}

// TestSubscribeCapConcurrent: parallel requests for one address still send at most 3 emails.
func TestSubscribeCapConcurrent(t *testing.T) {
	t.Parallel()
	b := subSetup(t, subOpts{})
	body := b.subscribeJSON("target@example.com", "newsletter")
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", b.srv.URL+"/v1/subscribe", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			res, err := b.srv.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			if res.StatusCode != http.StatusAccepted {
				t.Errorf("status %d", res.StatusCode)
			}
		})
	}
	wg.Wait()
	if n := len(b.mailer.all()); n != 3 {
		t.Fatalf("sent %d, want 3", n)
	}
}

func TestSubscribeSuppressed(t *testing.T) {
	t.Parallel()
	b := subSetup(t, subOpts{})
	ctx := context.Background()
	for _, reason := range []string{consent.ReasonHardBounce, consent.ReasonComplaint, consent.ReasonErased, consent.ReasonManual} {
		addr := reason + "@example.com"
		if _, err := b.svc.Suppress(ctx, b.pool, consent.Suppression{WorkspaceID: b.ws, Address: addr, Reason: reason}); err != nil {
			t.Fatal(err)
		}
		res := b.postJSON(t, b.subscribeJSON(addr, "newsletter"))
		if res.Status != http.StatusAccepted || res.Body["status"] != "pending" {
			t.Fatalf("%s: %d %s", reason, res.Status, res.Raw)
		}
	}
	b.nothingRecorded(t)
	if b.outcome("suppressed") != 4 {
		t.Fatalf("suppressed = %v", b.outcome("suppressed"))
	}

	// Someone who unsubscribed from all may ask again; confirming lifts the suppression.
	addr := "back@example.com"
	if _, err := b.svc.Suppress(ctx, b.pool, consent.Suppression{WorkspaceID: b.ws, Address: addr, Reason: consent.ReasonUnsubscribedAll}); err != nil {
		t.Fatal(err)
	}
	if res := b.postJSON(t, b.subscribeJSON(addr, "newsletter")); res.Status != http.StatusAccepted || len(b.mailer.all()) != 1 {
		t.Fatalf("unsubscribed_all: %d %s, sent %d", res.Status, res.Raw, len(b.mailer.all()))
	}
	if res := b.page(t, "POST", b.lastToken(t)); res.Status != http.StatusOK {
		t.Fatalf("confirm: %d %s", res.Status, res.Raw)
	}
	if _, err := b.svc.SuppressionGet(ctx, b.pool, b.ws, addr); err == nil {
		t.Fatal("the unsubscribe from all was not lifted")
	}
	var d consent.Decision
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		var err error
		d, err = b.svc.Decide(ctx, tx, consent.Request{WorkspaceID: b.ws, ContactID: subPtr(b.contactID(t, addr)), Address: addr,
			Stream: consent.StreamMarketing, Purpose: "newsletter"})
		return err
	})
	if err != nil || !d.Allowed {
		t.Fatalf("decision after confirming = %+v, %v", d, err)
	}
}

// TestConfirmSuppressedMeanwhile: an address that hard-bounced after its request cannot be confirmed.
func TestConfirmSuppressedMeanwhile(t *testing.T) {
	t.Parallel()
	b := subSetup(t, subOpts{})
	b.postJSON(t, b.subscribeJSON("gone@example.com", "newsletter"))
	if _, err := b.svc.Suppress(context.Background(), b.pool, consent.Suppression{WorkspaceID: b.ws, Address: "gone@example.com",
		Reason: consent.ReasonHardBounce}); err != nil {
		t.Fatal(err)
	}
	if res := b.page(t, "POST", b.lastToken(t)); res.Status != http.StatusGone {
		t.Fatalf("confirm: %d %s", res.Status, res.Raw)
	}
	if n := b.count(t, `SELECT count(*) FROM consent_events`); n != 0 {
		t.Fatalf("%d events", n)
	}
}

func (b *subBundle) contactID(t *testing.T, addr string) int64 {
	t.Helper()
	var id int64
	if err := b.pool.QueryRow(context.Background(), `SELECT id FROM contacts WHERE workspace_id = $1 AND email = $2`, b.ws, addr).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

func subPtr[T any](v T) *T { return &v }

// TestConfirmExistingContact: a confirmation grants to the contact the CRM already has.
func TestConfirmExistingContact(t *testing.T) {
	t.Parallel()
	b := subSetup(t, subOpts{})
	id := b.contact(t, b.ws, "known@example.com")
	b.postJSON(t, b.subscribeJSON("known@example.com", "newsletter"))
	if res := b.page(t, "POST", b.lastToken(t)); res.Status != http.StatusOK {
		t.Fatalf("confirm: %d %s", res.Status, res.Raw)
	}
	if n := b.count(t, `SELECT count(*) FROM contacts WHERE workspace_id = $1`, b.ws); n != 1 {
		t.Fatalf("%d contacts, want the existing one only", n)
	}
	if n := b.count(t, `SELECT count(*) FROM consent_events WHERE contact_id = $1`, id); n != 1 {
		t.Fatalf("%d events for the existing contact", n)
	}
}

func TestConfirmExpired(t *testing.T) {
	t.Parallel()
	b := subSetup(t, subOpts{})
	b.postJSON(t, b.subscribeJSON("late@example.com", "newsletter"))
	token := b.lastToken(t)
	b.clock.Add(72 * time.Hour)
	for _, method := range []string{"GET", "POST"} {
		res := b.page(t, method, token)
		if res.Status != http.StatusGone || !strings.Contains(string(res.Raw), "expired") {
			t.Fatalf("%s: %d %s", method, res.Status, res.Raw)
		}
		requireSubscribePageHeaders(t, res)
	}
	if n := b.count(t, `SELECT count(*) FROM consent_events`) + b.count(t, `SELECT count(*) FROM contacts`); n != 0 {
		t.Fatal("an expired link recorded something")
	}
}

// TestConfirmForged: tokens that were never issued, malformed ones, and an unsubscribe token
// answer 404 and record nothing.
func TestConfirmForged(t *testing.T) {
	t.Parallel()
	b := subSetup(t, subOpts{})
	b.postJSON(t, b.subscribeJSON("real@example.com", "newsletter"))
	real := b.lastToken(t)
	flipped := []byte(real)
	flipped[10] = map[bool]byte{true: 'b', false: 'a'}[flipped[10] == 'a']
	unsub := b.svc.Keys.Token(consent.Recipient{WorkspaceID: b.ws, ContactID: 1, PurposeID: 1})
	for _, token := range []string{string(flipped), real[:51], real + "a", strings.Repeat("a", 52), "1111", unsub,
		"%3Cscript%3E", url.PathEscape(real[:50] + "\r\n")} {
		for _, method := range []string{"GET", "POST"} {
			res := b.page(t, method, token)
			if res.Status != http.StatusNotFound || strings.Contains(string(res.Raw), "<script>") {
				t.Fatalf("%s %q: %d %s", method, token, res.Status, res.Raw)
			}
		}
	}
	if n := b.count(t, `SELECT count(*) FROM consent_events`) + b.count(t, `SELECT count(*) FROM contacts`) +
		b.count(t, `SELECT count(*) FROM subscribe_requests WHERE confirmed_at IS NOT NULL`); n != 0 {
		t.Fatal("a forged token recorded something")
	}
}

// TestSubscribeExpiryWorker: the worker deletes unconfirmed requests past their expiry and
// confirmed ones older than 30 days, and keeps the rest.
func TestSubscribeExpiryWorker(t *testing.T) {
	t.Parallel()
	b := subSetup(t, subOpts{})
	ctx := context.Background()
	now := b.clock.Now()
	rows := []struct {
		addr               string
		created, confirmed time.Duration // before now; confirmed 0: unconfirmed
		keep               bool
	}{
		{"expired@example.com", 73 * time.Hour, 0, false},
		{"pending@example.com", 71 * time.Hour, 0, true},
		{"recent@example.com", 20 * 24 * time.Hour, 19 * 24 * time.Hour, true},
		{"old@example.com", 32 * 24 * time.Hour, 31 * 24 * time.Hour, false},
	}
	for i, r := range rows {
		var confirmed *time.Time
		if r.confirmed != 0 {
			confirmed = subPtr(now.Add(-r.confirmed))
		}
		_, err := b.pool.Exec(ctx, `INSERT INTO subscribe_requests (id, workspace_id, token_hash, address, purposes, notice_versions,
			created_at, expires_at, confirmed_at) VALUES (gen_random_uuid(), $1, $2, $3, '{newsletter}', '{1}', $4, $5, $6)`,
			b.ws, []byte{byte(i)}, r.addr, now.Add(-r.created), now.Add(-r.created).Add(72*time.Hour), confirmed)
		if err != nil {
			t.Fatal(err)
		}
	}
	w := &consent.SubscribeExpiryWorker{DB: b.pool, Metrics: b.svc.Metrics, Now: b.clock.Now}
	if err := w.Work(ctx, &river.Job[consent.SubscribeExpiryArgs]{}); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if n := b.count(t, `SELECT count(*) FROM subscribe_requests WHERE address = $1`, r.addr); (n == 1) != r.keep {
			t.Errorf("%s: %d rows, keep %v", r.addr, n, r.keep)
		}
	}
	if b.outcome("expired") != 1 {
		t.Fatalf("expired = %v", b.outcome("expired"))
	}
	if consent.SubscribeExpiryJob() == nil || (consent.SubscribeExpiryArgs{}).Kind() != "consent.subscribe_expiry" {
		t.Fatal("periodic job")
	}
}

// TestLimitsClientKey: IPv6 clients share a bucket per /64, IPv4-mapped addresses count as IPv4,
// and IPv4 addresses have a bucket each.
func TestLimitsClientKey(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	l := &consent.Limits{PerIP: consent.Rate{PerMinute: 60, Burst: 1}, Now: func() time.Time { return now }}
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"[2001:db8::1]:1234", true},
		{"[2001:db8::ffff:2]:80", false}, // same /64
		{"[2001:db8:0:1::1]:80", true},   // next /64
		{"1.2.3.4:80", true},
		{"[::ffff:1.2.3.4]:81", false}, // the same IPv4 client
		{"1.2.3.5:80", true},
		{"not an address", true},
		{"not an address", false},
	} {
		ok, wait := l.AllowIP(tc.addr)
		if ok != tc.ok || (!ok && wait != time.Second) {
			t.Errorf("AllowIP(%q) = %v, %v; want %v", tc.addr, ok, wait, tc.ok)
		}
	}
}

// TestLimitsBounded: a flood of distinct clients does not grow the buckets without end, and
// buckets that have refilled are the ones forgotten first.
func TestLimitsBounded(t *testing.T) {
	t.Parallel()
	c := &subClock{t: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	l := &consent.Limits{PerIP: consent.Rate{PerMinute: 60, Burst: 1}, Now: c.Now}
	if ok, _ := l.AllowIP("192.0.2.1:1"); !ok {
		t.Fatal("first request refused")
	}
	for i := range 100_000 {
		l.AllowIP(fmt.Sprintf("10.%d.%d.%d:1", i>>16, i>>8&0xff, i&0xff))
	}
	// The table was full of empty buckets and has been cleared: 192.0.2.1 starts afresh.
	if ok, _ := l.AllowIP("192.0.2.1:1"); !ok {
		t.Fatal("bucket kept past the bound")
	}
}
