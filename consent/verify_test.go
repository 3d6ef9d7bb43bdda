package consent_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"herald/consent"
	"herald/internal/workspace"
)

// ledger records five events on two contacts and two purposes in a new workspace and returns
// the workspace id and the events' ids by seq (index 0 is seq 1).
func (b *bundle) ledger(t *testing.T, name string) (int64, []int64) {
	t.Helper()
	ws, err := workspace.Ensure(context.Background(), b.pool, name)
	if err != nil {
		t.Fatal(err)
	}
	c1 := b.contact(t, ws.ID, "one@"+name+".example")
	c2 := b.contact(t, ws.ID, "two@"+name+".example")
	b.purpose(t, ws.ID, "news")
	b.purpose(t, ws.ID, "offers")
	var ids []int64
	for _, e := range []consent.Event{
		{ContactID: c1, Purpose: "news", Action: consent.ActionGranted},
		{ContactID: c2, Purpose: "news", Action: consent.ActionGranted},
		{ContactID: c1, Purpose: "offers", Action: consent.ActionGranted},
		{ContactID: c1, Purpose: "news", Action: consent.ActionWithdrawn},
		{ContactID: c2, Purpose: "offers", Action: consent.ActionGranted},
	} {
		e.WorkspaceID = ws.ID
		e.NoticeVersion = 1
		e.Evidence = &consent.Evidence{IP: "192.0.2.7", UserAgent: "Mozilla/5.0", Address: "x@" + name + ".example"}
		ids = append(ids, b.record(t, e).ID)
	}
	if n, err := consent.Verify(context.Background(), b.pool, ws.ID); err != nil || n != 5 {
		t.Fatalf("untouched ledger: %d %v", n, err)
	}
	return ws.ID, ids
}

// tamper runs sql as the superuser with replication triggers off, which is how someone with
// database access would get past the append-only triggers.
func (b *bundle) tamper(t *testing.T, sql string, args ...any) {
	t.Helper()
	err := pgx.BeginFunc(context.Background(), b.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(context.Background(), `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		tag, err := tx.Exec(context.Background(), sql, args...)
		if err == nil && tag.RowsAffected() != 1 {
			err = fmt.Errorf("%d rows changed, want 1", tag.RowsAffected())
		}
		return err
	})
	if err != nil {
		t.Fatalf("tamper %q: %v", sql, err)
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tc := range []struct {
		name    string
		sql     string
		seq     int64 // the event whose row the SQL changes
		wantSeq int64
		wantID  bool // the break names an event id (false: the event is missing)
		problem string
	}{
		{"alter-purpose", `UPDATE consent_events SET purpose = 'tampered' WHERE id = $1`, 3, 3, true, "altered"},
		{"alter-action", `UPDATE consent_events SET action = 'granted' WHERE id = $1`, 4, 4, true, "altered"},
		{"alter-hash", `UPDATE consent_events SET hash = sha256(hash) WHERE id = $1`, 2, 2, true, "altered"},
		{"alter-recorded-at", `UPDATE consent_events SET recorded_at = recorded_at - interval '1 day' WHERE id = $1`, 1, 1, true, "altered"},
		{"delete-middle", `DELETE FROM consent_events WHERE id = $1`, 3, 3, false, "missing"},
		{"delete-first", `DELETE FROM consent_events WHERE id = $1`, 1, 1, false, "missing"},
		{"delete-last", `DELETE FROM consent_events WHERE id = $1`, 5, 5, false, "chain head"},
		{"alter-evidence-ip", `UPDATE consent_evidence SET ip = '198.51.100.1' WHERE event_id = $1`, 2, 2, true, "evidence"},
		{"alter-evidence-address", `UPDATE consent_evidence SET address = 'y@example.com' WHERE event_id = $1`, 5, 5, true, "evidence"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws, ids := b.ledger(t, tc.name)
			b.tamper(t, tc.sql, ids[tc.seq-1])
			n, err := consent.Verify(context.Background(), b.pool, ws)
			var br *consent.Break
			if !errors.As(err, &br) || !errors.Is(err, consent.ErrChainBroken) {
				t.Fatalf("Verify = %d, %v; want a *Break", n, err)
			}
			wantID := int64(0)
			if tc.wantID {
				wantID = ids[tc.wantSeq-1]
			}
			if br.Seq != tc.wantSeq || br.EventID != wantID || !strings.Contains(br.Problem, tc.problem) {
				t.Fatalf("break = %+v; want seq %d, event %d, problem mentioning %q", br, tc.wantSeq, wantID, tc.problem)
			}
			if n != tc.wantSeq-1 {
				t.Errorf("verified %d events before the break, want %d", n, tc.wantSeq-1)
			}
		})
	}
	// Erasure deletes evidence rows; the chain commits to them only through the commitment, so it
	// still verifies.
	t.Run("erase-evidence", func(t *testing.T) {
		ws, ids := b.ledger(t, "erase")
		for _, id := range ids[:2] {
			if _, err := b.pool.Exec(context.Background(), `DELETE FROM consent_evidence WHERE event_id = $1`, id); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := consent.Verify(context.Background(), b.pool, ws); err != nil || n != 5 {
			t.Fatalf("after erasure: %d %v", n, err)
		}
	})
}

// TestAppendOnly checks that, with the triggers on, not even the table owner can rewrite history.
func TestAppendOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	ws, ids := b.ledger(t, "ao")
	if err := consent.AuditWrite(ctx, b.pool, consent.Audit{WorkspaceID: ws, Actor: "test", Action: "test.write",
		Detail: map[string]any{"n": 1}}); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		`UPDATE consent_events SET action = 'granted' WHERE id = ` + fmt.Sprint(ids[3]),
		`UPDATE consent_events SET hash = hash`,
		`DELETE FROM consent_events WHERE id = ` + fmt.Sprint(ids[4]),
		`DELETE FROM consent_events`,
		`TRUNCATE consent_events CASCADE`,
		`UPDATE audit_log SET actor = 'someone else'`,
		`DELETE FROM audit_log`,
		`TRUNCATE audit_log`,
	} {
		_, err := b.pool.Exec(ctx, sql)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "23001" || !strings.Contains(pe.Message, "append-only") {
			t.Errorf("%s: err = %v; want restrict_violation (append-only)", sql, err)
		}
	}
	if n, err := consent.Verify(ctx, b.pool, ws); err != nil || n != 5 {
		t.Fatalf("after refused changes: %d %v", n, err)
	}
	var audits int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE workspace_id = $1 AND actor = 'test'`, ws).Scan(&audits); err != nil || audits != 1 {
		t.Fatalf("audit rows = %d %v; want 1", audits, err)
	}
}

// TestRecordConcurrent appends from 8 goroutines at once, starting with no state rows (writers race
// to create them) and mixing single events with two-event RecordAll calls whose purposes come in
// either order: no deadlock, the chain head serialises them into one gapless chain, and every
// state row names its contact's latest event for the purpose.
func TestRecordConcurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	ws, err := workspace.Ensure(ctx, b.pool, "busy")
	if err != nil {
		t.Fatal(err)
	}
	var cs []int64
	for i := range 5 {
		cs = append(cs, b.contact(t, ws.ID, fmt.Sprintf("c%d@example.com", i)))
	}
	purposes := []string{"news", "offers", "events"}
	for _, p := range purposes {
		b.purpose(t, ws.ID, p)
	}
	const workers, each = 8, 50
	var recorded atomic.Int64
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for i := range each {
				event := func(purpose string) *consent.Event {
					return &consent.Event{WorkspaceID: ws.ID, ContactID: cs[(g+i)%len(cs)], Purpose: purpose,
						Action: []string{consent.ActionGranted, consent.ActionWithdrawn}[i%2], Source: consent.SourceAPI,
						LawfulBasis: consent.BasisConsent, NoticeVersion: 1, Actor: fmt.Sprintf("worker:%d", g),
						Evidence: &consent.Evidence{IP: "203.0.113.9"}}
				}
				events := []*consent.Event{event(purposes[(g*7+i)%len(purposes)])}
				if i%5 == 0 { // a second purpose of the same contact, in either order
					events = append(events, event(purposes[(g*7+i+1+g%2)%len(purposes)]))
					recorded.Add(1)
				}
				if err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error { return b.svc.RecordAll(ctx, tx, events) }); err != nil {
					errs <- fmt.Errorf("worker %d event %d: %w", g, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := workers*each + recorded.Load()
	if n, err := consent.Verify(ctx, b.pool, ws.ID); err != nil || n != total {
		t.Fatalf("Verify = %d, %v; want %d", n, err, total)
	}
	rows, _ := b.pool.Query(ctx, `SELECT seq FROM consent_events WHERE workspace_id = $1 ORDER BY seq`, ws.ID)
	seqs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("seq[%d] = %d; the sequence has a gap or a repeat", i, s)
		}
	}
	if int64(len(seqs)) != total || !slices.IsSorted(seqs) {
		t.Fatalf("%d events, want %d", len(seqs), total)
	}
	var stale int
	err = b.pool.QueryRow(ctx, `
		SELECT count(*) FROM consent_state s
		WHERE s.workspace_id = $1 AND s.event_id <> (SELECT max(id) FROM consent_events e
			WHERE e.workspace_id = s.workspace_id AND e.contact_id = s.contact_id AND e.purpose = s.purpose)`, ws.ID).Scan(&stale)
	if err != nil || stale != 0 {
		t.Fatalf("%d state rows do not name their latest event (%v)", stale, err)
	}
}
