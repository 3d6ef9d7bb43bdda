package tracking

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"herald/consent"
	"herald/internal/dbtest"
	"herald/templates"
)

const trkBase = "https://herald.example"

// trkBundle is what a tracking test works with: a database of its own with two workspaces, the
// tracker, the event writer and the tracking routes on a real HTTP server.
type trkBundle struct {
	ctx      context.Context
	pool     *pgxpool.Pool
	svc      *consent.Service
	links    *Links
	tracker  *Tracker
	writer   *EventWriter
	metrics  *EventMetrics
	handler  *TrackHandler
	srv      *httptest.Server
	wsA, wsB int64
	now      time.Time
	n        int
}

type trkOpts struct {
	writer func(*EventWriter)
}

func trkSetup(tb testing.TB, o trkOpts) *trkBundle {
	tb.Helper()
	b := &trkBundle{ctx: context.Background(), pool: dbtest.NewPool(tb), now: time.Now().UTC().Truncate(time.Millisecond)}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	b.svc = &consent.Service{Keys: consent.DevKeys(), Metrics: consent.NewMetrics(reg), Logger: logger}
	b.links = NewLinks(b.pool, 0, 0)
	b.tracker = &Tracker{Consent: b.svc, Links: b.links, BaseURL: trkBase}
	b.metrics = NewEventMetrics(reg)
	b.writer = &EventWriter{DB: b.pool, Consent: b.svc, Metrics: b.metrics, Logger: logger}
	if o.writer != nil {
		o.writer(b.writer)
	}
	tb.Cleanup(b.writer.Close)
	b.handler = &TrackHandler{Keys: b.svc.Keys, Links: b.links, Events: b.writer, Logger: logger}
	r := chi.NewRouter()
	b.handler.Routes(r)
	b.srv = httptest.NewServer(r)
	tb.Cleanup(b.srv.Close)
	b.wsA = b.workspace(tb, "acme", consent.TrackingOptIn)
	b.wsB = b.workspace(tb, "globex", consent.TrackingOptOut)
	return b
}

// workspace creates a workspace with its tracking mode, a "news" purpose and the tracking purpose.
func (b *trkBundle) workspace(tb testing.TB, name, mode string) int64 {
	tb.Helper()
	var ws int64
	if err := b.pool.QueryRow(b.ctx, `INSERT INTO workspaces (name) VALUES ($1) RETURNING id`, name).Scan(&ws); err != nil {
		tb.Fatal(err)
	}
	b.setMode(tb, ws, mode, false)
	err := pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
		for _, p := range []string{"news", consent.TrackingPurpose} {
			if _, _, err := consent.PurposeSave(b.ctx, tx, consent.Purpose{WorkspaceID: ws, Name: p, Title: p, Notice: "About " + p}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return ws
}

func (b *trkBundle) setMode(tb testing.TB, ws int64, mode string, fullIP bool) {
	tb.Helper()
	_, err := b.pool.Exec(b.ctx, `INSERT INTO consent_settings (workspace_id, tracking_mode, tracking_full_ip) VALUES ($1, $2, $3)
		ON CONFLICT (workspace_id) DO UPDATE SET tracking_mode = $2, tracking_full_ip = $3`, ws, mode, fullIP)
	if err != nil {
		tb.Fatal(err)
	}
}

// track records the contact's choice for the tracking purpose (granted or withdrawn).
func (b *trkBundle) track(tb testing.TB, ws, contactID int64, action string) {
	tb.Helper()
	err := pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
		return b.svc.Record(b.ctx, tx, &consent.Event{WorkspaceID: ws, ContactID: contactID, Purpose: consent.TrackingPurpose,
			Action: action, Source: consent.SourceAPI, LawfulBasis: consent.BasisConsent, Actor: "test"})
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// campaign creates a sending campaign of ws and returns its id.
func (b *trkBundle) campaign(tb testing.TB, ws int64) int64 {
	tb.Helper()
	b.n++
	tpl, err := templates.Create(b.ctx, b.pool, ws, templates.Input{Name: fmt.Sprintf("tpl-%d", b.n), Subject: "News",
		HTML: `<p><a href="{{unsubscribe_url}}">Unsubscribe</a> {{postal_address}}</p>`})
	if err != nil {
		tb.Fatal(err)
	}
	var sender, id int64
	if err := b.pool.QueryRow(b.ctx, `INSERT INTO senders (workspace_id, name, from_address, from_name, postal_address)
		VALUES ($1, $2, 'news@acme.example', 'Acme', '1 Main Street') RETURNING id`, ws, fmt.Sprintf("sender-%d", b.n)).Scan(&sender); err != nil {
		tb.Fatal(err)
	}
	if err := b.pool.QueryRow(b.ctx, `INSERT INTO campaigns (workspace_id, name, purpose, template_name, template_version,
			sender_id, audience, status, fanout_done, started_at)
		VALUES ($1, $2, 'news', $3, $4, $5, '{}', 'sending', true, now()) RETURNING id`,
		ws, fmt.Sprintf("campaign %d", b.n), tpl.Name, tpl.Version, sender).Scan(&id); err != nil {
		tb.Fatal(err)
	}
	return id
}

// recipient adds a contact of ws as a sent recipient of campaign (sent an hour before b.now) and
// returns the recipient and contact ids; with grant it records the contact's tracking grant.
func (b *trkBundle) recipient(tb testing.TB, ws, campaign int64, grant bool) (recipientID, contactID int64) {
	tb.Helper()
	b.n++
	email := fmt.Sprintf("c%d@example.com", b.n)
	if err := b.pool.QueryRow(b.ctx, `INSERT INTO contacts (workspace_id, external_id, email) VALUES ($1, $2, $3) RETURNING id`,
		ws, fmt.Sprintf("ext-%d", b.n), email).Scan(&contactID); err != nil {
		tb.Fatal(err)
	}
	if grant {
		b.track(tb, ws, contactID, consent.ActionGranted)
	}
	if err := b.pool.QueryRow(b.ctx, `INSERT INTO campaign_recipients (campaign_id, contact_id, address, status, sent_at)
		VALUES ($1, $2, $3, 'sent', $4) RETURNING id`, campaign, contactID, email, b.now.Add(-time.Hour)).Scan(&recipientID); err != nil {
		tb.Fatal(err)
	}
	return recipientID, contactID
}

// storedEvent is a tracking_events row.
type storedEvent struct {
	WorkspaceID, CampaignID, RecipientID int64
	Kind                                 string
	LinkID                               *int64
	At                                   time.Time
	IP, UserAgent                        string
	Machine                              bool
	Reason                               string
}

func (b *trkBundle) events(tb testing.TB) []storedEvent {
	tb.Helper()
	rows, err := b.pool.Query(b.ctx, `SELECT workspace_id, campaign_id, recipient_id, kind, link_id, at, ip, user_agent,
		machine, machine_reason FROM tracking_events ORDER BY at, recipient_id, link_id`)
	if err != nil {
		tb.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[storedEvent])
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// get requests path on the test server without following redirects.
func (b *trkBundle) get(tb testing.TB, method, path string, header map[string]string) *http.Response {
	tb.Helper()
	req, err := http.NewRequest(method, b.srv.URL+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { resp.Body.Close() })
	return resp
}

func counter(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }
