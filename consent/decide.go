package consent

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"herald/internal/db"
)

// Decision is the answer of Decide.
type Decision struct {
	Allowed bool
	// Reason says why a send is blocked: a suppression reason, or one of the Reason* below.
	Reason string
	// Track (DecideBatch only) says whether the message may carry the open pixel and
	// click-tracking links: TrackingAllowed's answer for the contact, given whatever Allowed is.
	Track bool
}

// Reasons a send is blocked for besides a suppression entry.
const (
	// ReasonNoConsent: the ledger holds no grant of the message's purpose for the contact.
	ReasonNoConsent = "no_consent"
	// ReasonWithdrawn: the contact withdrew consent for the purpose.
	ReasonWithdrawn = "withdrawn"
	// ReasonExpired: the grant lapsed (its expiry has passed).
	ReasonExpired = "expired"
	// ReasonNoContact: a marketing message must name a contact, whose consent is checked.
	ReasonNoContact = "no_contact"
	// ReasonRestricted: the person restricted the processing of their data (see Restrict).
	ReasonRestricted = "restricted"
)

// Streams Decide knows.
const (
	StreamTransactional = "transactional"
	StreamMarketing     = "marketing"
)

// Request names what is about to be sent.
type Request struct {
	WorkspaceID int64
	ContactID   *int64
	Address     string // normalised recipient address
	Stream      string // "transactional" or "marketing"
	Purpose     string // marketing purpose; empty for transactional
}

// transactionalBlockers are the suppression reasons that stop transactional mail too. An
// unsubscribe from all marketing does not: mail about the recipient's account is not opted out of.
var transactionalBlockers = map[string]bool{
	ReasonHardBounce: true, ReasonErased: true, ReasonComplaint: true, ReasonManual: true,
}

// decideSQL reads, in one round trip, the address's suppression entry and the contact's state for
// the purpose, locking that state row FOR SHARE: until tx ends, a withdrawal (which updates the
// row) waits, and a withdrawal committed before this statement is seen by it.
const decideSQL = `
	WITH st AS (
		SELECT status, expires_at FROM consent_state
		WHERE workspace_id = $1 AND contact_id = $3 AND purpose = $4
		FOR SHARE
	)
	SELECT (SELECT reason FROM suppressions WHERE workspace_id = $1 AND address_hash = $2),
		(SELECT status FROM st), (SELECT expires_at IS NOT NULL AND expires_at <= $5 FROM st),
		coalesce((SELECT restricted_at IS NOT NULL FROM contacts WHERE workspace_id = $1 AND id = $3), false)`

// Decide says whether a message may be handed to SMTP now, and counts a refusal in
// herald_consent_blocked_total. Transactional mail ignores marketing consent but never goes to a
// hard-bouncing, complaining, erased or manually suppressed address. Marketing mail needs a live
// grant of its purpose and no suppression at all.
//
// For marketing, the transaction must stay open until the outcome of the SMTP hand-off is recorded: Decide
// locks the consent state it read, so a withdrawal cannot commit between this decision and the
// hand-off; q must be that transaction. Transactional decisions take no lock (q may be a pool).
func (s *Service) Decide(ctx context.Context, q db.Querier, r Request) (Decision, error) {
	d, err := s.decide(ctx, q, r)
	if err != nil {
		return d, err
	}
	if !d.Allowed {
		s.Metrics.Blocked.WithLabelValues(d.Reason).Inc()
	}
	return d, nil
}

func (s *Service) decide(ctx context.Context, q db.Querier, r Request) (Decision, error) {
	hash := s.Keys.AddressHash(r.WorkspaceID, r.Address)
	if r.Stream == StreamTransactional {
		var reason *string
		err := q.QueryRow(ctx, `SELECT reason FROM suppressions WHERE workspace_id = $1 AND address_hash = $2`,
			r.WorkspaceID, hash).Scan(&reason)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return Decision{}, fmt.Errorf("decide: %w", err)
		}
		if reason != nil && transactionalBlockers[*reason] {
			return Decision{Reason: *reason}, nil
		}
		return Decision{Allowed: true}, nil
	}
	if r.Stream != StreamMarketing {
		return Decision{}, fmt.Errorf("decide: unknown stream %q", r.Stream)
	}
	if _, ok := q.(pgx.Tx); !ok {
		return Decision{}, errors.New("decide: a marketing decision must run in the transaction that records the hand-off")
	}
	if r.ContactID == nil {
		return Decision{Reason: ReasonNoContact}, nil
	}
	var reason, status *string
	var expired *bool
	var restricted bool
	if err := q.QueryRow(ctx, decideSQL, r.WorkspaceID, hash, *r.ContactID, r.Purpose, s.now()).Scan(&reason, &status, &expired, &restricted); err != nil {
		return Decision{}, fmt.Errorf("decide: %w", err)
	}
	switch {
	case restricted:
		return Decision{Reason: ReasonRestricted}, nil
	case reason != nil:
		return Decision{Reason: *reason}, nil
	case status == nil:
		return Decision{Reason: ReasonNoConsent}, nil
	case *status == ActionWithdrawn:
		return Decision{Reason: ReasonWithdrawn}, nil
	case expired != nil && *expired:
		return Decision{Reason: ReasonExpired}, nil
	}
	return Decision{Allowed: true}, nil
}
