package mailer_test

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"herald/consent"
	"herald/internal/smtpcapture"
	"herald/mailer"
)

// handoffCheck is a DataHook that judges every marketing hand-off at the moment it happens: at
// the end of DATA, before the relay's 250, it reads the committed consent state of the recipient
// (on a pool of its own). A hand-off while that state is not a grant is a violation of the
// invariant "a withdrawal committed before the hand-off wins". Jitter delays the check, widening
// the window in which an implementation without the lock would let a withdrawal commit.
type handoffCheck struct {
	pool       atomic.Pointer[pgxpool.Pool]
	purpose    string
	jitter     time.Duration
	violations atomic.Int64
	checked    atomic.Int64

	mu       sync.Mutex
	received map[string][]time.Time // recipient -> hand-off times (after the check)
	bad      []string
}

func newHandoffCheck(purpose string, jitter time.Duration) *handoffCheck {
	return &handoffCheck{purpose: purpose, jitter: jitter, received: map[string][]time.Time{}}
}

// attach gives the check its own connections to the test database of b.
func (h *handoffCheck) attach(t testing.TB, b *bundle) {
	t.Helper()
	p, err := pgxpool.New(context.Background(), b.pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	h.pool.Store(p)
}

func (h *handoffCheck) hook(m *smtpcapture.Message) error {
	if h.jitter > 0 {
		time.Sleep(rand.N(h.jitter))
	}
	p := h.pool.Load()
	if p == nil || len(m.To) != 1 {
		return nil
	}
	var status *string
	err := p.QueryRow(context.Background(), `
		SELECT (SELECT s.status FROM consent_state s WHERE s.workspace_id = c.workspace_id AND s.contact_id = c.id AND s.purpose = $2)
		FROM contacts c WHERE c.email = $1`, m.To[0], h.purpose).Scan(&status)
	if err != nil {
		return fmt.Errorf("handoff check: %w", err) // refused: the test sees the message unsent
	}
	h.checked.Add(1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if status == nil || *status != consent.ActionGranted {
		h.violations.Add(1)
		h.bad = append(h.bad, m.To[0])
	}
	h.received[m.To[0]] = append(h.received[m.To[0]], time.Now())
	return nil
}

// seeded is a contact made by seedContacts.
type seeded struct {
	ID    int64
	Email string
}

// seedContacts creates n contacts of the workspace, the purpose, and a grant of it for each.
func seedContacts(t testing.TB, b *bundle, ws int64, purpose string, n int) []seeded {
	t.Helper()
	ctx := context.Background()
	rows, err := b.pool.Query(ctx, `INSERT INTO contacts (workspace_id, external_id, email)
		SELECT $1, 'c' || g, 'u' || g || '@example.com' FROM generate_series(1, $2) g RETURNING id, email`, ws, n)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[seeded])
	if err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		_, _, err := consent.PurposeSave(ctx, tx, consent.Purpose{WorkspaceID: ws, Name: purpose, Title: "News", Notice: "Monthly news."})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for start := 0; start < len(cs); start += 1000 {
		err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
			for _, c := range cs[start:min(start+1000, len(cs))] {
				if err := b.consent.Record(ctx, tx, consentEvent(ws, c.ID, purpose, consent.ActionGranted)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return cs
}

func consentEvent(ws, contact int64, purpose, action string) *consent.Event {
	return &consent.Event{WorkspaceID: ws, ContactID: contact, Purpose: purpose, Action: action,
		Source: consent.SourceAPI, LawfulBasis: consent.BasisConsent, Actor: "test"}
}

// recordConsent records one event in its own transaction and returns when its commit returned.
func recordConsent(ctx context.Context, b *bundle, ws, contact int64, purpose, action string) (time.Time, error) {
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		return b.consent.Record(ctx, tx, consentEvent(ws, contact, purpose, action))
	})
	return time.Now(), err
}

// enqueueMarketing inserts one marketing message per contact, with its send job, in batches of
// 1,000 per transaction (messages and jobs together), and returns the message ids.
func enqueueMarketing(t testing.TB, b *bundle, ws int64, purpose string, cs []seeded) []string {
	t.Helper()
	ctx := context.Background()
	ids := make([]string, 0, len(cs))
	for start := 0; start < len(cs); start += 1000 {
		err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
			var params []river.InsertManyParams
			for _, c := range cs[start:min(start+1000, len(cs))] {
				id := testUUID()
				m := &mailer.Message{ID: id, WorkspaceID: ws, Stream: mailer.StreamMarketing, Purpose: purpose,
					ContactID: &c.ID, To: c.Email, From: "news@acme.example", FromName: "Acme News",
					Subject: "News", Text: "Hello", MessageID: id + "@herald.test"}
				if _, err := mailer.MessageInsert(ctx, tx, m, "", nil); err != nil {
					return err
				}
				params = append(params, river.InsertManyParams{Args: mailer.SendArgs{MessageID: id, Marketing: true},
					InsertOpts: &river.InsertOpts{Queue: mailer.QueueMarketing, MaxAttempts: 5}})
				ids = append(ids, id)
			}
			_, err := b.river.InsertManyFastTx(ctx, tx, params)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

func testUUID() string {
	var u [16]byte
	_, _ = crand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// waitFinal waits until no message of the workspace is queued, sending or deferred.
func (b *bundle) waitFinal(t testing.TB, ws int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var open int
		if err := b.pool.QueryRow(context.Background(), `SELECT count(*) FROM messages
			WHERE workspace_id = $1 AND status NOT IN ('sent', 'failed', 'suppressed')`, ws).Scan(&open); err != nil {
			t.Fatal(err)
		}
		if open == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still not final after %s", open, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
