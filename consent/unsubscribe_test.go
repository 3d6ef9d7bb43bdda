package consent_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"herald/consent"
	"herald/internal/db"
	"herald/internal/workspace"
)

// pages is a running server with the recipients' pages, a workspace "acme" with the purposes
// "news" and "offers", and a contact jane@example.com who has granted news.
type pages struct {
	*bundle
	srv     *httptest.Server
	ws      workspace.Workspace
	jane    int64
	news    consent.Purpose
	offers  consent.Purpose
	newsTok string // jane's token for news
}

func setupPages(t *testing.T) *pages {
	t.Helper()
	ctx := context.Background()
	p := &pages{bundle: setup(t)}
	var err error
	if p.ws, err = workspace.Ensure(ctx, p.pool, "acme"); err != nil {
		t.Fatal(err)
	}
	h := &consent.Handler{DB: p.pool, Service: p.svc, Logger: p.svc.Logger, BaseURL: "https://herald.example"}
	r := chi.NewRouter()
	h.PageRoutes(r)
	p.srv = httptest.NewServer(r)
	t.Cleanup(p.srv.Close)
	p.jane = p.contact(t, p.ws.ID, "jane@example.com")
	p.news = p.purpose(t, p.ws.ID, "news")
	p.offers = p.purpose(t, p.ws.ID, "offers")
	p.grant(t, p.jane, "news")
	p.newsTok = p.svc.Keys.Token(consent.Recipient{WorkspaceID: p.ws.ID, ContactID: p.jane, PurposeID: p.news.ID})
	return p
}

func (p *pages) grant(t *testing.T, contactID int64, purpose string) {
	t.Helper()
	p.record(t, consent.Event{WorkspaceID: p.ws.ID, ContactID: contactID, Purpose: purpose, Action: consent.ActionGranted, NoticeVersion: 1})
}

// do sends a request to the pages, never following a redirect, and checks what must hold for
// every answer: no redirect, no cookie, the security headers.
func (p *pages) do(t *testing.T, method, path, contentType string, body io.Reader) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, p.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("User-Agent", "MailboxProvider/1.0")
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		t.Errorf("%s %s: redirect %d", method, path, resp.StatusCode)
	}
	if c := resp.Header.Values("Set-Cookie"); len(c) > 0 {
		t.Errorf("%s %s: sets a cookie: %v", method, path, c)
	}
	for k, want := range map[string]string{
		"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "no-referrer",
		"Cache-Control":           "no-store",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s %s: %s = %q, want %q", method, path, k, got, want)
		}
	}
	return resp.StatusCode, string(b)
}

func (p *pages) postForm(t *testing.T, token string, form url.Values) (int, string) {
	t.Helper()
	return p.do(t, http.MethodPost, "/u/"+token, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
}

func (p *pages) oneClick(t *testing.T, token string) (int, string) {
	t.Helper()
	return p.do(t, http.MethodPost, "/u/"+token, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
}

func (p *pages) events(t *testing.T) int {
	t.Helper()
	var n int
	if err := p.pool.QueryRow(context.Background(), `SELECT count(*) FROM consent_events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// state returns the contact's status for purpose ("" without one).
func (p *pages) state(t *testing.T, contactID int64, purpose string) string {
	t.Helper()
	states, err := p.svc.States(context.Background(), p.pool, p.ws.ID, contactID)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range states {
		if st.Purpose == purpose {
			return st.Status
		}
	}
	return ""
}

func (p *pages) lastEvent(t *testing.T, contactID int64) consent.Event {
	t.Helper()
	h, err := p.svc.History(context.Background(), p.pool, p.ws.ID, contactID)
	if err != nil || len(h) == 0 {
		t.Fatalf("history: %d events, %v", len(h), err)
	}
	return h[len(h)-1]
}

func (p *pages) verify(t *testing.T) {
	t.Helper()
	if _, err := consent.Verify(context.Background(), p.pool, p.ws.ID); err != nil {
		t.Fatalf("ledger does not verify: %v", err)
	}
}

func multipartBody(t *testing.T, fields map[string]string) (string, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		if err := mw.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return mw.FormDataContentType(), &buf
}

func TestOneClickUnsubscribe(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		body func(t *testing.T) (string, io.Reader)
	}{
		{"urlencoded", func(t *testing.T) (string, io.Reader) {
			return "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click")
		}},
		{"multipart", func(t *testing.T) (string, io.Reader) {
			return multipartBody(t, map[string]string{"List-Unsubscribe": "One-Click"})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := setupPages(t)
			before := p.events(t)
			for i := range 3 { // repeats answer 200 and record nothing more
				ct, body := tc.body(t)
				status, page := p.do(t, http.MethodPost, "/u/"+p.newsTok, ct, body)
				if status != http.StatusOK || !strings.Contains(page, "unsubscribed") {
					t.Fatalf("POST %d: %d %s", i, status, page)
				}
			}
			if got := p.events(t) - before; got != 1 {
				t.Fatalf("%d events recorded, want 1", got)
			}
			if st := p.state(t, p.jane, "news"); st != consent.ActionWithdrawn {
				t.Fatalf("news is %q", st)
			}
			e := p.lastEvent(t, p.jane)
			if e.Action != consent.ActionWithdrawn || e.Source != consent.SourceOneClick || e.LawfulBasis != consent.BasisConsent ||
				e.Actor != consent.ActorRecipient || e.Proof["channel"] != "one_click" || e.Purpose != "news" {
				t.Fatalf("event %+v", e)
			}
			if ev := e.Evidence; ev == nil || ev.IP != "127.0.0.1" || ev.UserAgent != "MailboxProvider/1.0" || ev.Address != "jane@example.com" {
				t.Fatalf("evidence %+v", e.Evidence)
			}
			if got := testutil.ToFloat64(p.svc.Metrics.Unsubscribes.WithLabelValues("one_click")); got != 1 {
				t.Fatalf("herald_unsubscribes_total{channel=one_click} = %v", got)
			}
			if st := p.state(t, p.jane, "offers"); st != "" {
				t.Fatalf("offers touched: %q", st)
			}
			p.verify(t)
		})
	}
}

func TestOneClickWithoutPurposeUnsubscribesFromAll(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := setupPages(t)
	p.grant(t, p.jane, "offers")
	tok := p.svc.Keys.Token(consent.Recipient{WorkspaceID: p.ws.ID, ContactID: p.jane})
	if status, page := p.oneClick(t, tok); status != http.StatusOK {
		t.Fatalf("%d %s", status, page)
	}
	for _, name := range []string{"news", "offers"} {
		if st := p.state(t, p.jane, name); st != consent.ActionWithdrawn {
			t.Fatalf("%s is %q", name, st)
		}
	}
	sp, err := p.svc.SuppressionGet(ctx, p.pool, p.ws.ID, "jane@example.com")
	if err != nil || sp.Reason != consent.ReasonUnsubscribedAll {
		t.Fatalf("suppression %+v %v", sp, err)
	}
	n := p.events(t)
	if status, _ := p.oneClick(t, tok); status != http.StatusOK || p.events(t) != n {
		t.Fatalf("repeat: %d, events %d -> %d", status, n, p.events(t))
	}
	if got := testutil.ToFloat64(p.svc.Metrics.Unsubscribes.WithLabelValues("one_click")); got != 1 {
		t.Fatalf("herald_unsubscribes_total{channel=one_click} = %v", got)
	}
	p.verify(t)
}

func TestUnsubscribeHostileTokens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := setupPages(t)
	other, err := workspace.Ensure(ctx, p.pool, "other")
	if err != nil {
		t.Fatal(err)
	}
	otherPurpose := p.purpose(t, other.ID, "deals")
	forger := mustKeys(t, "1:not-the-real-token-key-000")
	raw, _ := tokenEncoding.DecodeString(p.newsTok)
	raw[len(raw)/2] ^= 0x10

	for name, tok := range map[string]string{
		"forged":                  forger.Token(consent.Recipient{WorkspaceID: p.ws.ID, ContactID: p.jane, PurposeID: p.news.ID}),
		"flipped bit":             tokenEncoding.EncodeToString(raw),
		"truncated":               p.newsTok[:len(p.newsTok)-3],
		"garbage":                 "not-a-token",
		"script":                  "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
		"another workspace's id":  p.svc.Keys.Token(consent.Recipient{WorkspaceID: p.ws.ID, ContactID: p.jane, PurposeID: otherPurpose.ID}),
		"no such purpose":         p.svc.Keys.Token(consent.Recipient{WorkspaceID: p.ws.ID, ContactID: p.jane, PurposeID: 1 << 40}),
		"no such workspace":       p.svc.Keys.Token(consent.Recipient{WorkspaceID: 1 << 40, ContactID: p.jane, PurposeID: p.news.ID}),
		"acme's purpose in other": p.svc.Keys.Token(consent.Recipient{WorkspaceID: other.ID, ContactID: p.jane, PurposeID: p.news.ID}),
		"contact of another ws":   p.svc.Keys.Token(consent.Recipient{WorkspaceID: other.ID, ContactID: p.jane, PurposeID: otherPurpose.ID}),
		"oversized (200 letters)": strings.Repeat("a", 200),
	} {
		t.Run(name, func(t *testing.T) {
			before := p.events(t)
			status, page := p.oneClick(t, tok)
			// A contact id of another workspace is simply not found there: nothing to unsubscribe.
			want := http.StatusBadRequest
			if name == "contact of another ws" {
				want = http.StatusOK
			}
			if status != want {
				t.Fatalf("one-click: %d, want %d: %s", status, want, page)
			}
			if status, page := p.postForm(t, tok, url.Values{"action": {"unsubscribe_all"}}); status != want {
				t.Fatalf("unsubscribe_all: %d, want %d: %s", status, want, page)
			}
			if status, page := p.postForm(t, tok, url.Values{"action": {"save"}}); status != want {
				t.Fatalf("save: %d, want %d: %s", status, want, page)
			}
			if status, page := p.do(t, http.MethodGet, "/u/"+tok, "", nil); status != want || strings.Contains(page, "jane") || strings.Contains(page, "<script>") {
				t.Fatalf("GET: %d, want %d: %s", status, want, page)
			}
			if got := p.events(t); got != before {
				t.Fatalf("%d events recorded", got-before)
			}
		})
	}
	if st := p.state(t, p.jane, "news"); st != consent.ActionGranted {
		t.Fatalf("news is %q", st)
	}
	if _, err := p.svc.SuppressionGet(ctx, p.pool, p.ws.ID, "jane@example.com"); !errors.Is(err, db.ErrNotFound) {
		t.Fatalf("suppressed: %v", err)
	}
}

func TestUnsubscribeErasedContact(t *testing.T) {
	t.Parallel()
	p := setupPages(t)
	if _, err := p.pool.Exec(context.Background(), `DELETE FROM contacts WHERE id = $1`, p.jane); err != nil {
		t.Fatal(err)
	}
	before := p.events(t)
	for _, req := range []func() (int, string){
		func() (int, string) { return p.oneClick(t, p.newsTok) },
		func() (int, string) { return p.do(t, http.MethodGet, "/u/"+p.newsTok, "", nil) },
		func() (int, string) { return p.postForm(t, p.newsTok, url.Values{"action": {"unsubscribe_all"}}) },
	} {
		if status, page := req(); status != http.StatusOK || !strings.Contains(page, "nothing to unsubscribe") {
			t.Fatalf("%d %s", status, page)
		}
	}
	if got := p.events(t); got != before {
		t.Fatalf("%d events recorded", got-before)
	}
}

func TestUnsubscribeHostileBodies(t *testing.T) {
	t.Parallel()
	p := setupPages(t)
	bigCT, big := multipartBody(t, map[string]string{"List-Unsubscribe": "One-Click", "pad": strings.Repeat("x", 70<<10)})
	var upload bytes.Buffer
	mw := multipart.NewWriter(&upload)
	_ = mw.WriteField("List-Unsubscribe", "One-Click")
	fw, _ := mw.CreateFormFile("file", "x.txt")
	_, _ = fw.Write([]byte("hello"))
	_ = mw.Close()
	const form = "application/x-www-form-urlencoded"
	for _, tc := range []struct {
		name, contentType string
		body              io.Reader
		want              int
	}{
		{"oversized urlencoded", form, strings.NewReader("List-Unsubscribe=One-Click&pad=" + strings.Repeat("x", 65<<10)), http.StatusRequestEntityTooLarge},
		{"oversized multipart", bigCT, big, http.StatusRequestEntityTooLarge},
		{"file upload", mw.FormDataContentType(), &upload, http.StatusBadRequest},
		{"json", "application/json", strings.NewReader(`{"List-Unsubscribe":"One-Click"}`), http.StatusUnsupportedMediaType},
		{"no content type", "", strings.NewReader("List-Unsubscribe=One-Click"), http.StatusUnsupportedMediaType},
		{"empty form", form, strings.NewReader(""), http.StatusBadRequest},
		{"wrong value", form, strings.NewReader("List-Unsubscribe=one-click-please"), http.StatusBadRequest},
		{"bad escape", form, strings.NewReader("List-Unsubscribe=One-Click&x=%zz"), http.StatusBadRequest},
		{"not UTF-8", form, strings.NewReader("List-Unsubscribe=One-Click&x=%ff%fe"), http.StatusBadRequest},
		{"CRLF", form, strings.NewReader("List-Unsubscribe=One-Click&x=a%0d%0aBcc:%20x@example.com"), http.StatusBadRequest},
		{"NUL", form, strings.NewReader("List-Unsubscribe=One-Click%00"), http.StatusBadRequest},
		{"unknown action", form, strings.NewReader("action=delete_everything"), http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := p.events(t)
			if status, page := p.do(t, http.MethodPost, "/u/"+p.newsTok, tc.contentType, tc.body); status != tc.want {
				t.Fatalf("%d, want %d: %s", status, tc.want, page)
			}
			if got := p.events(t); got != before {
				t.Fatalf("%d events recorded", got-before)
			}
		})
	}
	if st := p.state(t, p.jane, "news"); st != consent.ActionGranted {
		t.Fatalf("news is %q", st)
	}
}

// Ten mailbox-provider POSTs of one token at once: each answers 200, and exactly one withdrawal
// is recorded.
func TestOneClickConcurrent(t *testing.T) {
	t.Parallel()
	p := setupPages(t)
	before := p.events(t)
	var wg sync.WaitGroup
	statuses := make([]int, 10)
	for i := range statuses {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, p.srv.URL+"/u/"+p.newsTok, strings.NewReader("List-Unsubscribe=One-Click"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	wg.Wait()
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Errorf("request %d: %d", i, s)
		}
	}
	if got := p.events(t) - before; got != 1 {
		t.Fatalf("%d withdrawal events, want exactly 1", got)
	}
	p.verify(t)
}

// BenchmarkOneClick measures one-click withdrawals over HTTP: 3,000 per iteration, each of
// another contact (so each records an event), from 8 concurrent clients.
func BenchmarkOneClick(b *testing.B) {
	const perIter, clients = 3000, 8
	ctx := context.Background()
	bu := setup(b)
	ws, err := workspace.Ensure(ctx, bu.pool, "acme")
	if err != nil {
		b.Fatal(err)
	}
	news := bu.purpose(b, ws.ID, "news")
	r := chi.NewRouter()
	(&consent.Handler{DB: bu.pool, Service: bu.svc}).PageRoutes(r)
	srv := httptest.NewServer(r)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		var ids []int64
		err = pgx.BeginFunc(ctx, bu.pool, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `INSERT INTO contacts (workspace_id, external_id, email)
				SELECT $1, 'c' || $3::int || '-' || i, 'c' || $3::int || '-' || i || '@example.com'
				FROM generate_series(1, $2::int) i RETURNING id`, ws.ID, perIter, i)
			if err != nil {
				return err
			}
			if ids, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
				return err
			}
			events := make([]*consent.Event, len(ids))
			for j, id := range ids {
				events[j] = &consent.Event{WorkspaceID: ws.ID, ContactID: id, Purpose: "news", Action: consent.ActionGranted,
					Source: consent.SourceAPI, LawfulBasis: consent.BasisConsent, Actor: "bench", NoticeVersion: 1}
			}
			return bu.svc.RecordAll(ctx, tx, events)
		})
		if err != nil {
			b.Fatal(err)
		}
		tokens := make(chan string, len(ids))
		for _, id := range ids {
			tokens <- bu.svc.Keys.Token(consent.Recipient{WorkspaceID: ws.ID, ContactID: id, PurposeID: news.ID})
		}
		close(tokens)
		b.StartTimer()
		start := time.Now()
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				for tok := range tokens {
					resp, err := client.Post(srv.URL+"/u/"+tok, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
					}
				}
			})
		}
		wg.Wait()
		total += time.Since(start)
	}
	b.StopTimer()
	rate := float64(b.N*perIter) / total.Seconds()
	b.ReportMetric(rate, "unsubscribes/s")
	b.Logf("one-click unsubscribes over HTTP, %d clients: %.0f/s (%.2f ms each per client)", clients, rate,
		float64(clients)*1000/rate)
	var n int
	_ = bu.pool.QueryRow(ctx, `SELECT count(*) FROM consent_events WHERE action = 'withdrawn'`).Scan(&n)
	if n != b.N*perIter {
		b.Fatalf("%d withdrawals for %d requests", n, b.N*perIter)
	}
}
