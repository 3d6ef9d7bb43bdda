package mailer_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"

	"herald/consent"
	"herald/internal/apitest"
	"herald/internal/config"
	"herald/internal/db"
	"herald/internal/dbtest"
	"herald/internal/queue"
	"herald/internal/smtpcapture"
	"herald/internal/workspace"
	"herald/mailer"
)

// bundle is what a mailer test works with: a database of its own, a capture SMTP server whose
// answers the test scripts, River workers, and the HTTP API with two workspaces' keys.
type bundle struct {
	pool    *pgxpool.Pool
	smtp    *smtpcapture.Server
	api     *httptest.Server
	metrics *mailer.Metrics
	consent *consent.Service
	river   *river.Client[pgx.Tx]
	keyA    string // workspace "a", messages:send
	keyB    string // workspace "b", messages:send
	wsA     int64
}

type setupOpts struct {
	dataHook    func(m *smtpcapture.Message) error
	rcptHook    func(rcpt string) error
	maxAttempts int
	noWorkers   bool
	workers     int           // River MaxWorkers (default 4)
	poolSize    int           // relay connections (default 4)
	cooldown    time.Duration // River FetchCooldown (default 5ms)
	keep        int           // capture server's Keep
	// noConsentCheck skips the consent decision (benchmarks of its cost only).
	noConsentCheck bool
	dbPool         int // database connections (default 20, HERALD_DB_POOL's default)
	dkim           *mailer.DKIM
	noPipelining   bool   // the relay sends DATA a command at a time (RelayOptions.NoPipelining)
	baseURL        string // SendWorker.BaseURL (default testBaseURL)
	// transport replaces the relay to the capture server (failover and outage tests).
	transport mailer.Transport
}

// Where the harness's marketing mail points its unsubscribe links and List-Id.
const (
	testBaseURL       = "https://herald.test"
	testInboundDomain = "in.herald.test"
)

func setup(t testing.TB, o setupOpts) *bundle {
	t.Helper()
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("HERALD_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	pool, err := db.Open(ctx, dbtest.NewDB(t), int32(cmp.Or(o.dbPool, 20))) // default: HERALD_DB_POOL's
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	b := &bundle{pool: pool}
	b.smtp, err = smtpcapture.Start(smtpcapture.Options{Addr: "127.0.0.1:0", DataHook: o.dataHook, RcptHook: o.rcptHook, Keep: o.keep})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.smtp.Close() })
	relay, err := mailer.NewRelay(mailer.RelayOptions{
		SMTP: config.SMTP{Host: "127.0.0.1", Port: b.smtp.Port(), TLS: config.TLSNone},
		HELO: "test.local", Timeout: 5 * time.Second, Size: cmp.Or(o.poolSize, 4), Logger: logger,
		NoPipelining: o.noPipelining,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(relay.Close)
	reg := prometheus.NewRegistry()
	b.metrics = mailer.NewMetrics(reg)
	b.consent = &consent.Service{Keys: consent.DevKeys(), Metrics: consent.NewMetrics(reg), Logger: logger}
	workers := river.NewWorkers()
	var transport mailer.Transport = relay
	if o.transport != nil {
		transport = o.transport
	}
	sw := &mailer.SendWorker{DB: b.pool, Consent: b.consent, Relay: transport, Metrics: b.metrics, Logger: logger,
		RetryBase: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond, SMTPTimeout: 5 * time.Second,
		BaseURL: cmp.Or(o.baseURL, testBaseURL), InboundDomain: testInboundDomain, DKIM: o.dkim}
	if o.noConsentCheck {
		mailer.WithoutConsentCheck(sw)
	}
	river.AddWorker(workers, sw)
	qo := queue.Options{Logger: logger, FetchCooldown: cmp.Or(o.cooldown, 5*time.Millisecond)}
	if !o.noWorkers {
		qo.Workers = workers
		qo.Queues = map[string]river.QueueConfig{
			mailer.QueueTransactional: {MaxWorkers: cmp.Or(o.workers, 4)},
			mailer.QueueMarketing:     {MaxWorkers: cmp.Or(o.workers, 4)},
		}
	}
	b.river, err = queue.New(b.pool, qo)
	if err != nil {
		t.Fatal(err)
	}
	if !o.noWorkers {
		if err := b.river.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = b.river.Stop(sctx)
		})
	}
	if o.maxAttempts == 0 {
		o.maxAttempts = 5
	}
	h := &mailer.Handler{DB: b.pool, River: b.river, Logger: logger, Metrics: b.metrics,
		MaxBodyBytes: 1 << 20, MaxAttempts: o.maxAttempts, MessageIDDomain: "herald.test"}
	r := chi.NewRouter()
	r.Route("/v1", func(r chi.Router) {
		r.Use((&workspace.Authenticator{DB: b.pool, TTL: 5 * time.Second}).Middleware(logger))
		h.Routes(r)
	})
	b.api = httptest.NewServer(r)
	t.Cleanup(b.api.Close)

	b.keyA, b.wsA = newKey(t, b.pool, "a", workspace.ScopeMessagesSend)
	b.keyB, _ = newKey(t, b.pool, "b", workspace.ScopeMessagesSend)
	return b
}

func newKey(t testing.TB, pool *pgxpool.Pool, ws string, scopes ...string) (string, int64) {
	t.Helper()
	w, err := workspace.Ensure(context.Background(), pool, ws)
	if err != nil {
		t.Fatal(err)
	}
	k, err := workspace.CreateKey(context.Background(), pool, w.ID, scopes)
	if err != nil {
		t.Fatal(err)
	}
	return k, w.ID
}

// do sends method path with key and idem (none when empty) and body, as JSON when not empty.
func (b *bundle) do(t *testing.T, method, path, key, idem string, body string) apitest.Response {
	t.Helper()
	r := apitest.Request{Method: method, Path: path, Key: key, IdempotencyKey: idem, Body: strings.NewReader(body)}
	if body != "" {
		r.ContentType = "application/json"
	}
	return apitest.Do(t, b.api, r)
}

func (b *bundle) send(t *testing.T, key, idem string, body string) string {
	t.Helper()
	res := b.do(t, "POST", "/v1/messages", key, idem, body)
	if res.Status != http.StatusAccepted {
		t.Fatalf("POST /v1/messages: %d %s", res.Status, res.Raw)
	}
	return res.Body["id"].(string)
}

// waitStatus polls GET /v1/messages/{id} until the message reaches status.
func (b *bundle) waitStatus(t *testing.T, key, id, status string) apitest.Response {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		res := b.do(t, "GET", "/v1/messages/"+id, key, "", "")
		if res.Status == http.StatusOK && res.Body["status"] == status {
			return res
		}
		if time.Now().After(deadline) {
			t.Fatalf("message %s did not reach %q: %d %s", id, status, res.Status, res.Raw)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (b *bundle) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := b.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitCount polls sql until it counts want rows.
func (b *bundle) waitCount(t *testing.T, want int, sql string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		n := b.count(t, sql, args...)
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d, want %d", sql, n, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func history(res apitest.Response) []string {
	var out []string
	hist, _ := res.Body["history"].([]any)
	for _, h := range hist {
		out = append(out, h.(map[string]any)["status"].(string))
	}
	return out
}

func mustJSON(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return buf.String()
}
