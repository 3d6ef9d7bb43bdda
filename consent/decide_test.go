package consent_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/consent"
	"herald/internal/db"
	"herald/internal/workspace"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	a, _ := workspace.Ensure(ctx, b.pool, "a")
	other, _ := workspace.Ensure(ctx, b.pool, "b")
	for addr, reason := range map[string]string{
		"bounced@example.com":  consent.ReasonHardBounce,
		"erased@example.com":   consent.ReasonErased,
		"complain@example.com": consent.ReasonComplaint,
		"manual@example.com":   consent.ReasonManual,
		"unsub@example.com":    consent.ReasonUnsubscribedAll,
	} {
		added, err := b.svc.Suppress(ctx, b.pool, consent.Suppression{WorkspaceID: a.ID, Address: addr, Reason: reason})
		if err != nil || !added {
			t.Fatalf("suppress %s: %v %v", addr, added, err)
		}
	}
	// A second entry for a listed address keeps the first, whatever the case of the address.
	if added, err := b.svc.Suppress(ctx, b.pool, consent.Suppression{WorkspaceID: a.ID, Address: "Bounced@example.com", Reason: consent.ReasonManual}); err != nil || added {
		t.Fatalf("re-suppress: %v %v", added, err)
	}
	if s, err := b.svc.SuppressionGet(ctx, b.pool, a.ID, "bounced@example.com"); err != nil || s.Reason != consent.ReasonHardBounce || s.Address != "bounced@example.com" {
		t.Fatalf("entry = %+v %v", s, err)
	}
	if s, err := b.svc.SuppressionGet(ctx, b.pool, a.ID, "erased@example.com"); err != nil || s.Address != "" {
		t.Fatalf("an erased address is stored in clear: %+v %v", s, err)
	}
	if _, err := b.svc.SuppressionGet(ctx, b.pool, other.ID, "bounced@example.com"); !errors.Is(err, db.ErrNotFound) {
		t.Fatalf("b sees a's suppression: %v", err)
	}

	granted := b.contact(t, a.ID, "granted@example.com")
	withdrawn := b.contact(t, a.ID, "withdrawn@example.com")
	expired := b.contact(t, a.ID, "expired@example.com")
	unsub := b.contact(t, a.ID, "unsub@example.com")
	never := b.contact(t, a.ID, "never@example.com")
	b.purpose(t, a.ID, "news")
	b.record(t, consent.Event{WorkspaceID: a.ID, ContactID: granted, Purpose: "news", Action: consent.ActionGranted})
	b.record(t, consent.Event{WorkspaceID: a.ID, ContactID: unsub, Purpose: "news", Action: consent.ActionGranted})
	b.record(t, consent.Event{WorkspaceID: a.ID, ContactID: withdrawn, Purpose: "news", Action: consent.ActionGranted})
	b.record(t, consent.Event{WorkspaceID: a.ID, ContactID: withdrawn, Purpose: "news", Action: consent.ActionWithdrawn})
	past := b.now.Add(-2 * 365 * 24 * 3600e9)
	lapse := past.Add(365 * 24 * 3600e9)
	b.record(t, consent.Event{WorkspaceID: a.ID, ContactID: expired, Purpose: "news", Action: consent.ActionGranted,
		LawfulBasis: consent.BasisSoftOptIn, OccurredAt: past, ExpiresAt: &lapse})

	for _, tc := range []struct {
		ws      int64
		contact int64
		addr    string
		stream  string
		purpose string
		allowed bool
		reason  string
	}{
		{a.ID, 0, "ok@example.com", "transactional", "", true, ""},
		{a.ID, 0, "bounced@example.com", "transactional", "", false, consent.ReasonHardBounce},
		{a.ID, 0, "erased@example.com", "transactional", "", false, consent.ReasonErased},
		{a.ID, 0, "complain@example.com", "transactional", "", false, consent.ReasonComplaint},
		{a.ID, 0, "manual@example.com", "transactional", "", false, consent.ReasonManual},
		{a.ID, 0, "unsub@example.com", "transactional", "", true, ""},       // account mail is not opted out of
		{other.ID, 0, "bounced@example.com", "transactional", "", true, ""}, // lists are per workspace
		{a.ID, granted, "granted@example.com", "marketing", "news", true, ""},
		{a.ID, granted, "granted@example.com", "marketing", "promotions", false, consent.ReasonNoConsent},
		{a.ID, never, "never@example.com", "marketing", "news", false, consent.ReasonNoConsent},
		{a.ID, withdrawn, "withdrawn@example.com", "marketing", "news", false, consent.ReasonWithdrawn},
		{a.ID, expired, "expired@example.com", "marketing", "news", false, consent.ReasonExpired},
		{a.ID, unsub, "unsub@example.com", "marketing", "news", false, consent.ReasonUnsubscribedAll},
		{a.ID, 0, "granted@example.com", "marketing", "news", false, consent.ReasonNoContact},
		{other.ID, granted, "granted@example.com", "marketing", "news", false, consent.ReasonNoConsent}, // consent is per workspace
	} {
		r := consent.Request{WorkspaceID: tc.ws, Address: tc.addr, Stream: tc.stream, Purpose: tc.purpose}
		if tc.contact != 0 {
			r.ContactID = &tc.contact
		}
		tx, err := b.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		d, err := b.svc.Decide(ctx, tx, r)
		_ = tx.Rollback(ctx)
		if err != nil || d.Allowed != tc.allowed || d.Reason != tc.reason {
			t.Errorf("Decide(%d, %d, %s, %s, %s) = %+v, %v; want allowed=%v reason=%q", tc.ws, tc.contact, tc.addr, tc.stream, tc.purpose, d, err, tc.allowed, tc.reason)
		}
		if tc.stream != "marketing" || tc.contact == 0 {
			continue
		}
		// DecideBatch answers the same, also with the recipient amid others.
		tx, err = b.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ds, err := b.svc.DecideBatch(ctx, tx, tc.ws, tc.purpose, []consent.BatchRecipient{
			{ContactID: never, Address: "never@example.com"}, {ContactID: tc.contact, Address: tc.addr},
			{ContactID: granted, Address: "granted@example.com"}})
		_ = tx.Rollback(ctx)
		if err != nil || len(ds) != 3 || ds[1] != d {
			t.Errorf("DecideBatch(%d, %s, %d) = %+v, %v; Decide said %+v", tc.ws, tc.purpose, tc.contact, ds, err, d)
		}
	}
	// A marketing decision outside a transaction could not hold its lock: refused.
	if _, err := b.svc.Decide(ctx, b.pool, consent.Request{WorkspaceID: a.ID, ContactID: &granted, Address: "granted@example.com", Stream: "marketing", Purpose: "news"}); err == nil {
		t.Error("marketing Decide on a pool: no error")
	}
}

// TestDecideBatchHoldsWithdrawals: while a batch's transaction is open, a withdrawal of one of its
// contacts waits (it is seen waiting on a lock), and completes once the batch ends.
func TestDecideBatchHoldsWithdrawals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	ws, _ := workspace.Ensure(ctx, b.pool, "a")
	b.purpose(t, ws.ID, "news")
	var rs []consent.BatchRecipient
	for _, addr := range []string{"a@example.com", "b@example.com", "c@example.com"} {
		id := b.contact(t, ws.ID, addr)
		b.record(t, consent.Event{WorkspaceID: ws.ID, ContactID: id, Purpose: "news", Action: consent.ActionGranted})
		rs = append(rs, consent.BatchRecipient{ContactID: id, Address: addr})
	}
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := b.svc.DecideBatch(ctx, tx, ws.ID, "news", rs)
	if err != nil || !ds[0].Allowed || !ds[1].Allowed || !ds[2].Allowed {
		t.Fatalf("DecideBatch = %+v, %v", ds, err)
	}
	done := make(chan error, 1)
	go func() {
		done <- pgx.BeginFunc(ctx, b.pool, func(wtx pgx.Tx) error {
			return b.svc.Record(ctx, wtx, &consent.Event{WorkspaceID: ws.ID, ContactID: rs[1].ContactID, Purpose: "news",
				Action: consent.ActionWithdrawn, Source: consent.SourceOneClick, LawfulBasis: consent.BasisConsent, Actor: "test"})
		})
	}()
	// Wait until the withdrawal is blocked on a lock (not merely slow).
	for {
		var waiting bool
		err := b.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock')`).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the withdrawal finished while the batch held its lock: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("withdrawal after the batch: %v", err)
	}
}
