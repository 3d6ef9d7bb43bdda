package consent_test

import (
	"cmp"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"herald/consent"
	"herald/internal/contacts"
	"herald/internal/dbtest"
)

// bundle is what a consent test works with: a database of its own and a Service on a fixed clock.
type bundle struct {
	pool    *pgxpool.Pool
	svc     *consent.Service
	reg     *prometheus.Registry
	now     time.Time
	counter int
}

func setup(t testing.TB) *bundle {
	t.Helper()
	b := &bundle{pool: dbtest.NewPool(t), reg: prometheus.NewRegistry(),
		now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	b.svc = &consent.Service{Keys: consent.DevKeys(), Metrics: consent.NewMetrics(b.reg),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return b.now }}
	return b
}

// contact creates a contact with the given address and returns its id.
func (b *bundle) contact(t testing.TB, workspaceID int64, email string) int64 {
	t.Helper()
	b.counter++
	c, _, err := contacts.Upsert(context.Background(), b.pool, workspaceID, contacts.Input{
		ExternalID: "c-" + email, Email: email})
	if err != nil {
		t.Fatal(err)
	}
	return c.ID
}

// purpose creates a purpose with a default notice.
func (b *bundle) purpose(t testing.TB, workspaceID int64, name string) consent.Purpose {
	t.Helper()
	var p consent.Purpose
	err := pgx.BeginFunc(context.Background(), b.pool, func(tx pgx.Tx) error {
		var err error
		p, _, err = consent.PurposeSave(context.Background(), tx, consent.Purpose{WorkspaceID: workspaceID, Name: name,
			Title: "The " + name, Notice: "We send you " + name + "."})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// record appends e (source api, basis consent, actor "test" unless given) in its own transaction.
func (b *bundle) record(t testing.TB, e consent.Event) consent.Event {
	t.Helper()
	e.Source = cmp.Or(e.Source, consent.SourceAPI)
	e.LawfulBasis = cmp.Or(e.LawfulBasis, consent.BasisConsent)
	e.Actor = cmp.Or(e.Actor, "test")
	err := pgx.BeginFunc(context.Background(), b.pool, func(tx pgx.Tx) error {
		return b.svc.Record(context.Background(), tx, &e)
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}
