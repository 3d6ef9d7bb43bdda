package consent_test

import (
	"context"
	"errors"
	"testing"

	"herald/consent"
	"herald/internal/db"
	"herald/internal/dbtest"
	"herald/internal/workspace"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewPool(t)
	a, _ := workspace.Ensure(ctx, pool, "a")
	b, _ := workspace.Ensure(ctx, pool, "b")
	for addr, reason := range map[string]string{
		"bounced@example.com":  consent.ReasonHardBounce,
		"erased@example.com":   consent.ReasonErased,
		"complain@example.com": consent.ReasonComplaint,
		"manual@example.com":   consent.ReasonManual,
	} {
		added, err := consent.Suppress(ctx, pool, consent.Suppression{WorkspaceID: a.ID, Address: addr, Reason: reason})
		if err != nil || !added {
			t.Fatalf("suppress %s: %v %v", addr, added, err)
		}
	}
	// A second entry for a listed address keeps the first.
	if added, err := consent.Suppress(ctx, pool, consent.Suppression{WorkspaceID: a.ID, Address: "bounced@example.com", Reason: consent.ReasonManual}); err != nil || added {
		t.Fatalf("re-suppress: %v %v", added, err)
	}
	if s, err := consent.SuppressionGet(ctx, pool, a.ID, "bounced@example.com"); err != nil || s.Reason != consent.ReasonHardBounce {
		t.Fatalf("entry = %+v %v", s, err)
	}
	if _, err := consent.SuppressionGet(ctx, pool, b.ID, "bounced@example.com"); !errors.Is(err, db.ErrNotFound) {
		t.Fatalf("b sees a's suppression: %v", err)
	}

	for _, tc := range []struct {
		ws      int64
		addr    string
		stream  string
		allowed bool
		reason  string
	}{
		{a.ID, "ok@example.com", "transactional", true, ""},
		{a.ID, "bounced@example.com", "transactional", false, consent.ReasonHardBounce},
		{a.ID, "erased@example.com", "transactional", false, consent.ReasonErased},
		{a.ID, "complain@example.com", "transactional", false, consent.ReasonComplaint},
		{a.ID, "manual@example.com", "transactional", false, consent.ReasonManual},
		{b.ID, "bounced@example.com", "transactional", true, ""}, // lists are per workspace
		{a.ID, "ok@example.com", "marketing", false, consent.ReasonNoConsent},
		{a.ID, "bounced@example.com", "marketing", false, consent.ReasonHardBounce},
	} {
		d, err := consent.Decide(ctx, pool, consent.Request{WorkspaceID: tc.ws, Address: tc.addr, Stream: tc.stream})
		if err != nil || d.Allowed != tc.allowed || d.Reason != tc.reason {
			t.Errorf("Decide(%d, %s, %s) = %+v, %v; want allowed=%v reason=%q", tc.ws, tc.addr, tc.stream, d, err, tc.allowed, tc.reason)
		}
	}
}
