package consent

import (
	"context"
	"errors"
	"fmt"

	"herald/internal/db"
)

// Decision is the answer of Decide.
type Decision struct {
	Allowed bool
	// Reason says why a send is blocked (a suppression reason, or "no_consent").
	Reason string
}

// ReasonNoConsent blocks marketing mail for which the ledger holds no live opt-in.
const ReasonNoConsent = "no_consent"

// Request names what is about to be sent.
type Request struct {
	WorkspaceID int64
	ContactID   *int64
	Address     string
	Stream      string // "transactional" or "marketing"
	Purpose     string // marketing purpose; empty for transactional
}

// Decide says whether a message may be handed to SMTP now. Transactional mail ignores marketing
// consent but never goes to a hard-bouncing or erased address (nor to a complaining one: a
// complaint is the strongest signal a recipient can give). Marketing mail needs a live opt-in,
// which the consent ledger provides; until a workspace's ledger grants it, marketing is refused.
func Decide(ctx context.Context, q db.Querier, r Request) (Decision, error) {
	s, err := SuppressionGet(ctx, q, r.WorkspaceID, r.Address)
	switch {
	case err == nil:
		return Decision{Reason: s.Reason}, nil
	case !errors.Is(err, db.ErrNotFound):
		return Decision{}, fmt.Errorf("decide: %w", err)
	}
	if r.Stream != "transactional" {
		return Decision{Reason: ReasonNoConsent}, nil
	}
	return Decision{Allowed: true}, nil
}
