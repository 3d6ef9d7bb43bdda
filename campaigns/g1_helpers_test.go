package campaigns_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"

	"herald/campaigns"
	"herald/consent"
	"herald/internal/apitest"
	"herald/internal/dbtest"
	"herald/internal/queue"
	"herald/internal/workspace"
	"herald/templates"
)

// cBundle is what a campaign test works with: a database of its own, an insert-only River
// client, the consent service, a workspace with a purpose, a marketing template and a sender,
// and the campaigns API behind the workspace authenticator.
type cBundle struct {
	pool   *pgxpool.Pool
	river  *river.Client[pgx.Tx]
	svc    *consent.Service
	srv    *httptest.Server
	ws     int64
	key    string // campaigns:write key of ws
	now    time.Time
	logger *slog.Logger
	n      int
}

// marketingHTML passes templates.CheckMarketing.
const marketingHTML = `<p>Hello {{.contact.name}}</p><p><a href="{{unsubscribe_url}}">Unsubscribe</a></p><p>{{postal_address}}</p>`

func cSetup(t testing.TB) *cBundle {
	t.Helper()
	ctx := context.Background()
	b := &cBundle{pool: dbtest.NewPool(t), now: time.Now().UTC().Truncate(time.Second),
		logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	b.svc = &consent.Service{Keys: consent.DevKeys(), Metrics: consent.NewMetrics(prometheus.NewRegistry()), Logger: b.logger}
	var err error
	if b.river, err = queue.New(b.pool, queue.Options{Logger: b.logger}); err != nil {
		t.Fatal(err)
	}
	b.ws = b.workspace(t, "acme")
	if b.key, err = workspace.CreateKey(ctx, b.pool, b.ws, []string{workspace.ScopeCampaignsWrite}); err != nil {
		t.Fatal(err)
	}
	b.purpose(t, b.ws, "news")
	b.template(t, b.ws, "promo", marketingHTML)
	b.sender(t, b.ws, "main")
	h := &campaigns.Handler{DB: b.pool, River: b.river, Consent: b.svc, Logger: b.logger, MaxBodyBytes: 8 << 10,
		Now: func() time.Time { return b.now }}
	r := chi.NewRouter()
	r.Route("/v1", func(r chi.Router) {
		r.Use(workspace.Auth(b.pool, b.logger))
		h.Routes(r)
	})
	b.srv = httptest.NewServer(r)
	t.Cleanup(b.srv.Close)
	return b
}

func (b *cBundle) workspace(t testing.TB, name string) int64 {
	t.Helper()
	w, err := workspace.Ensure(context.Background(), b.pool, name)
	if err != nil {
		t.Fatal(err)
	}
	return w.ID
}

func (b *cBundle) purpose(t testing.TB, ws int64, name string) {
	t.Helper()
	err := pgx.BeginFunc(context.Background(), b.pool, func(tx pgx.Tx) error {
		_, _, err := consent.PurposeSave(context.Background(), tx, consent.Purpose{WorkspaceID: ws, Name: name,
			Title: "The " + name, Notice: "We send you " + name + "."})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (b *cBundle) template(t testing.TB, ws int64, name, html string) int {
	t.Helper()
	tpl, err := templates.Create(context.Background(), b.pool, ws, templates.Input{Name: name, Subject: "News for {{.contact.name}}", HTML: html})
	if err != nil {
		t.Fatal(err)
	}
	return tpl.Version
}

func (b *cBundle) sender(t testing.TB, ws int64, name string) {
	t.Helper()
	_, err := campaigns.SenderCreate(context.Background(), b.pool, ws, campaigns.SenderInput{Name: name,
		FromAddress: "news@acme.example", FromName: "Acme", PostalAddress: "Acme Ltd\n1 Main Street\nSpringfield"})
	if err != nil {
		t.Fatal(err)
	}
}

// contacts creates n contacts of ws (emails prefix-i@example.com, time zone tz) and returns their ids.
func (b *cBundle) contacts(t testing.TB, ws int64, prefix string, n int, tz string) []int64 {
	t.Helper()
	rows, err := b.pool.Query(context.Background(), `INSERT INTO contacts (workspace_id, external_id, email, timezone)
		SELECT $1, $2 || '-' || i, $2 || '-' || i || '@example.com', $4 FROM generate_series(1, $3) i
		ORDER BY i RETURNING id`, ws, prefix, n, tz)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// list creates a list of ws holding ids.
func (b *cBundle) list(t testing.TB, ws int64, name string, ids []int64) {
	t.Helper()
	ctx := context.Background()
	var id int64
	if err := b.pool.QueryRow(ctx, `INSERT INTO lists (workspace_id, name) VALUES ($1, $2) RETURNING id`, ws, name).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(ctx, `INSERT INTO list_members (workspace_id, list_id, contact_id)
		SELECT $1, $2, unnest($3::bigint[])`, ws, id, ids); err != nil {
		t.Fatal(err)
	}
}

// campaign creates a draft of ws through the storage API.
func (b *cBundle) campaign(t testing.TB, ws int64, in campaigns.CampaignInput) campaigns.Campaign {
	t.Helper()
	b.n++
	name := fmt.Sprintf("campaign %d", b.n)
	def := func(p **string, v string) {
		if *p == nil {
			*p = &v
		}
	}
	def(&in.Name, name)
	def(&in.Purpose, "news")
	def(&in.Template, "promo")
	def(&in.Sender, "main")
	if in.Audience == nil {
		in.Audience = &campaigns.Audience{Lists: []string{"all"}}
	}
	c, err := campaigns.CampaignCreate(context.Background(), b.pool, ws, in, b.now)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// transition applies an action in its own transaction.
func (b *cBundle) transition(ws, id int64, action string) (campaigns.Campaign, error) {
	var c campaigns.Campaign
	err := pgx.BeginFunc(context.Background(), b.pool, func(tx pgx.Tx) error {
		var err error
		c, err = campaigns.Transition(context.Background(), tx, b.river, ws, id, action, b.now)
		return err
	})
	return c, err
}

func (b *cBundle) mustTransition(t testing.TB, ws, id int64, action string) campaigns.Campaign {
	t.Helper()
	c, err := b.transition(ws, id, action)
	if err != nil {
		t.Fatalf("%s campaign %d: %v", action, id, err)
	}
	return c
}

func (b *cBundle) fanOut(opts ...func(*campaigns.FanOutWorker)) *campaigns.FanOutWorker {
	w := &campaigns.FanOutWorker{DB: b.pool, River: b.river, Consent: b.svc, Logger: b.logger}
	for _, o := range opts {
		o(w)
	}
	return w
}

// do sends an API request with b's key (or key when given) and a JSON body (nil: none).
func (b *cBundle) do(t testing.TB, method, path string, body any, key ...string) apitest.Response {
	t.Helper()
	r := apitest.Request{Method: method, Path: path, Key: b.key}
	if len(key) > 0 {
		r.Key = key[0]
	}
	switch v := body.(type) {
	case nil:
	case string:
		r.Body, r.ContentType = bytes.NewBufferString(v), "application/json"
	default:
		raw, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		r.Body, r.ContentType = bytes.NewReader(raw), "application/json"
	}
	return apitest.Do(t, b.srv, r)
}

// recipientRows returns the campaign's recipients by contact id.
type g1Recipient struct {
	id        int64
	status    string
	reason    string
	sendAfter *time.Time
}

func (b *cBundle) recipientsOf(t testing.TB, campaignID int64) map[int64]g1Recipient {
	t.Helper()
	rows, err := b.pool.Query(context.Background(), `SELECT contact_id, id, status, reason, send_after
		FROM campaign_recipients WHERE campaign_id = $1`, campaignID)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]g1Recipient{}
	var cid int64
	var r g1Recipient
	if _, err := pgx.ForEachRow(rows, []any{&cid, &r.id, &r.status, &r.reason, &r.sendAfter}, func() error {
		if _, dup := out[cid]; dup {
			return fmt.Errorf("contact %d has two rows", cid)
		}
		out[cid] = r
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// g1Batch is an inserted SendBatchArgs job.
type g1Batch struct {
	args        campaigns.SendBatchArgs
	scheduledAt time.Time
}

func (b *cBundle) batches(t testing.TB, campaignID int64) []g1Batch {
	t.Helper()
	rows, err := b.pool.Query(context.Background(), `SELECT args, scheduled_at FROM river_job
		WHERE kind = 'campaigns.send_batch' AND (args->>'campaign_id')::bigint = $1 ORDER BY id`, campaignID)
	if err != nil {
		t.Fatal(err)
	}
	var out []g1Batch
	var raw []byte
	var at time.Time
	if _, err := pgx.ForEachRow(rows, []any{&raw, &at}, func() error {
		var j g1Batch
		if err := json.Unmarshal(raw, &j.args); err != nil {
			return err
		}
		j.scheduledAt = at
		out = append(out, j)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// jobCount counts the jobs of kind with args campaign_id.
func (b *cBundle) jobCount(t testing.TB, kind string, campaignID int64) int {
	t.Helper()
	var n int
	if err := b.pool.QueryRow(context.Background(), `SELECT count(*) FROM river_job
		WHERE kind = $1 AND coalesce((args->>'campaign_id')::bigint, 0) = $2`, kind, campaignID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// status reads a campaign's state.
func (b *cBundle) status(t testing.TB, id int64) campaigns.Campaign {
	t.Helper()
	c, err := campaigns.Load(context.Background(), b.pool, id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// job wraps args as the job River would hand a worker.
func job[T river.JobArgs](args T) *river.Job[T] {
	return &river.Job[T]{Args: args}
}

func ptr[T any](v T) *T { return &v }
