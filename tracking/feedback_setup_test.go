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

	"herald/consent"
	"herald/internal/dbtest"
	"herald/internal/workspace"
)

// fbBundle is what a feedback test works with: a database of its own, a consent Service and a
// Feedback on one movable clock.
type fbBundle struct {
	ctx  context.Context
	pool *pgxpool.Pool
	svc  *consent.Service
	fb   *Feedback
	reg  *prometheus.Registry
	verp VERP
	now  time.Time
	n    int
}

func fbSetup(tb testing.TB) *fbBundle {
	tb.Helper()
	b := &fbBundle{ctx: context.Background(), pool: dbtest.NewPool(tb), reg: prometheus.NewRegistry(),
		now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	clock := func() time.Time { return b.now }
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	b.svc = &consent.Service{Keys: consent.DevKeys(), Metrics: consent.NewMetrics(b.reg), Logger: logger, Now: clock}
	b.fb = &Feedback{DB: b.pool, Consent: b.svc, Metrics: NewFeedbackMetrics(b.reg), Logger: logger, Now: clock}
	b.verp = VERP{Keys: b.svc.Keys, Domain: "bounce.herald.example"}
	return b
}

func (b *fbBundle) workspace(tb testing.TB) int64 {
	tb.Helper()
	b.n++
	ws, err := workspace.Ensure(b.ctx, b.pool, fmt.Sprintf("fb-ws-%d", b.n))
	if err != nil {
		tb.Fatal(err)
	}
	return ws.ID
}

// contact creates a contact of ws that granted the given marketing purposes (created as needed).
func (b *fbBundle) contact(tb testing.TB, ws int64, purposes ...string) (id int64, email string) {
	tb.Helper()
	b.n++
	email = fmt.Sprintf("person%d@example.com", b.n)
	if err := b.pool.QueryRow(b.ctx, `INSERT INTO contacts (workspace_id, external_id, email) VALUES ($1, $2, $3) RETURNING id`,
		ws, fmt.Sprintf("ext-%d", b.n), email).Scan(&id); err != nil {
		tb.Fatal(err)
	}
	var events []*consent.Event
	err := pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
		for _, p := range purposes {
			if _, err := tx.Exec(b.ctx, `INSERT INTO purposes (workspace_id, name, title, notice) VALUES ($1, $2, $2, 'We send '||$2)
				ON CONFLICT DO NOTHING`, ws, p); err != nil {
				return err
			}
			events = append(events, &consent.Event{WorkspaceID: ws, ContactID: id, Purpose: p, Action: consent.ActionGranted,
				Source: consent.SourceAPI, LawfulBasis: consent.BasisConsent, NoticeVersion: 1, Actor: "test"})
		}
		return b.svc.RecordAll(b.ctx, tx, events)
	})
	if err != nil {
		tb.Fatal(err)
	}
	return id, email
}

// campaignRecipient creates a sent campaign of ws to the contact and returns the campaign and
// recipient row ids.
func (b *fbBundle) campaignRecipient(tb testing.TB, ws, contactID int64, email string) (campaignID, recipientID int64) {
	tb.Helper()
	b.n++
	var sender int64
	if err := b.pool.QueryRow(b.ctx, `INSERT INTO senders (workspace_id, name, from_address, from_name, postal_address)
		VALUES ($1, $2, 'news@acme.example', 'Acme', '1 Main Street') RETURNING id`, ws, fmt.Sprintf("fb-sender-%d", b.n)).Scan(&sender); err != nil {
		tb.Fatal(err)
	}
	if err := b.pool.QueryRow(b.ctx, `INSERT INTO campaigns (workspace_id, name, purpose, template_name, template_version,
			sender_id, audience, status, fanout_done, started_at)
		VALUES ($1, $2, 'news', 'tpl', 1, $3, '{}', 'sending', true, now()) RETURNING id`,
		ws, fmt.Sprintf("fb campaign %d", b.n), sender).Scan(&campaignID); err != nil {
		tb.Fatal(err)
	}
	if err := b.pool.QueryRow(b.ctx, `INSERT INTO campaign_recipients (campaign_id, contact_id, address, status, sent_at)
		VALUES ($1, $2, $3, 'sent', $4) RETURNING id`, campaignID, contactID, email, b.now.Add(-time.Hour)).Scan(&recipientID); err != nil {
		tb.Fatal(err)
	}
	return campaignID, recipientID
}

// message creates a sent transactional message of ws to address (contactID 0: none) and returns
// its uuid, seq and Message-ID.
func (b *fbBundle) message(tb testing.TB, ws, contactID int64, address string) (id string, seq int64, messageID string) {
	tb.Helper()
	b.n++
	var contact *int64
	if contactID != 0 {
		contact = &contactID
	}
	messageID = fmt.Sprintf("m%d-%d@mid.herald.example", ws, b.n)
	err := b.pool.QueryRow(b.ctx, `INSERT INTO messages (id, workspace_id, stream, contact_id, to_address, from_address,
			subject, message_id, status)
		VALUES (gen_random_uuid(), $1, 'transactional', $2, $3, 'app@acme.example', 'Hi', $4, 'sent')
		RETURNING id::text, seq`, ws, contact, address, messageID).Scan(&id, &seq)
	if err != nil {
		tb.Fatal(err)
	}
	return id, seq, messageID
}

// suppression returns the reason address is suppressed for in ws, "" when it is not.
func (b *fbBundle) suppression(tb testing.TB, ws int64, address string) string {
	tb.Helper()
	var reason string
	err := b.pool.QueryRow(b.ctx, `SELECT reason FROM suppressions WHERE workspace_id = $1 AND address_hash = $2`,
		ws, b.svc.Keys.AddressHash(ws, address)).Scan(&reason)
	if err != nil && err != pgx.ErrNoRows {
		tb.Fatal(err)
	}
	return reason
}

// feedbackRows counts ws's feedback_events of kind.
func (b *fbBundle) feedbackRows(tb testing.TB, ws int64, kind string) int {
	tb.Helper()
	var n int
	if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM feedback_events WHERE workspace_id = $1 AND kind = $2`, ws, kind).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// hookServer serves the webhook handler's routes (the settings API behind a principal of ws
// with the admin scope) on an httptest server.
func (b *fbBundle) hookServer(tb testing.TB, h *WebhookHandler, ws int64) *httptest.Server {
	tb.Helper()
	r := chi.NewRouter()
	r.Route("/v1", func(r chi.Router) {
		r.Use(func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				next.ServeHTTP(w, req.WithContext(workspace.WithPrincipal(req.Context(),
					workspace.Principal{WorkspaceID: ws, KeyID: 7, Scopes: []string{workspace.ScopeAdmin}})))
			})
		})
		h.Routes(r)
	})
	h.HookRoutes(r)
	srv := httptest.NewServer(r)
	tb.Cleanup(srv.Close)
	return srv
}
