package consent

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// BatchRecipient is one recipient of a marketing batch: a contact and its normalised address.
type BatchRecipient struct {
	ContactID int64
	Address   string
}

// decideBatchSQL reads, in one round trip, every recipient's suppression entry and consent state
// for the purpose, and whether its message may be tracked (trackingRuleSQL). It runs after the
// batch's contacts' consent locks are held (shared), so its snapshot, taken when it starts,
// already includes any withdrawal committed before them. Its plan relies on statistics: right
// after a bulk load, before autovacuum has analysed consent_state, the planner may take the table
// for empty and hash a workspace's consent rows per batch.
const decideBatchSQL = `
	WITH ` + trackingModeCTE + `
	SELECT r.i, sp.reason, st.status, st.expires_at IS NOT NULL AND st.expires_at <= $3, c.restricted_at IS NOT NULL,
		` + trackingRuleSQL + `
	FROM unnest($2::bigint[], $4::bytea[]) WITH ORDINALITY AS r (contact_id, hash, i)
	LEFT JOIN consent_state st ON st.workspace_id = $1 AND st.contact_id = r.contact_id AND st.purpose = $5
	LEFT JOIN consent_state tr ON tr.workspace_id = $1 AND tr.contact_id = r.contact_id AND tr.purpose = 'tracking'
	LEFT JOIN suppressions sp ON sp.workspace_id = $1 AND sp.address_hash = r.hash
	LEFT JOIN contacts c ON c.workspace_id = $1 AND c.id = r.contact_id
	ORDER BY r.i`

// DecideBatch is Decide for a batch of marketing sends of one workspace and purpose, in one round
// trip: decisions[i] answers rs[i], with Track (whether its message may be tracked) for each, and
// refusals are counted in herald_consent_blocked_total. It takes the consent lock of every
// contact of the batch in shared mode until tx ends (the lock RecordAll takes exclusively, see
// LockContacts), so tx must stay open until the outcomes of the batch's hand-offs are known: a
// withdrawal committed before this call is seen, and one committed later waits for the batch.
//
// Unlike Decide's FOR SHARE row lock, an advisory lock writes nothing: the transaction gets no
// transaction id, creates no multixacts, and so does not hold back the cleanup of the rows the
// batch's outcomes update meanwhile.
func (s *Service) DecideBatch(ctx context.Context, tx pgx.Tx, workspaceID int64, purpose string, rs []BatchRecipient) ([]Decision, error) {
	ids := make([]int64, len(rs))
	hashes := make([][]byte, len(rs))
	for i, r := range rs {
		ids[i], hashes[i] = r.ContactID, s.Keys.AddressHash(workspaceID, r.Address)
	}
	if err := s.lockContactsShared(ctx, tx, workspaceID, ids); err != nil {
		return nil, fmt.Errorf("decide batch: %w", err)
	}
	rows, err := tx.Query(ctx, decideBatchSQL, workspaceID, ids, s.now(), hashes, purpose)
	if err != nil {
		return nil, fmt.Errorf("decide batch: %w", err)
	}
	defer rows.Close()
	out := make([]Decision, len(rs))
	for rows.Next() {
		var i int64
		var reason, status *string
		var expired, restricted *bool
		var track bool
		if err := rows.Scan(&i, &reason, &status, &expired, &restricted, &track); err != nil {
			return nil, fmt.Errorf("decide batch: %w", err)
		}
		d := Decision{Allowed: true}
		switch {
		case restricted != nil && *restricted:
			d = Decision{Reason: ReasonRestricted}
		case reason != nil:
			d = Decision{Reason: *reason}
		case status == nil:
			d = Decision{Reason: ReasonNoConsent}
		case *status == ActionWithdrawn:
			d = Decision{Reason: ReasonWithdrawn}
		case expired != nil && *expired:
			d = Decision{Reason: ReasonExpired}
		}
		d.Track = track
		if i < 1 || int(i) > len(out) {
			return nil, fmt.Errorf("decide batch: row %d out of range", i)
		}
		out[i-1] = d
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("decide batch: %w", err)
	}
	for _, d := range out {
		if !d.Allowed {
			s.Metrics.Blocked.WithLabelValues(d.Reason).Inc()
		}
	}
	return out, nil
}

// lockContactsShared takes the contacts' consent locks in shared mode, in key order (the order
// LockContacts takes them exclusively), in one statement: a sorted array walked in order.
func (s *Service) lockContactsShared(ctx context.Context, tx pgx.Tx, workspaceID int64, contactIDs []int64) error {
	keys := contactLockKeys(workspaceID, contactIDs)
	if _, err := tx.Exec(ctx, `SELECT count(pg_advisory_xact_lock_shared(k)) FROM (SELECT k FROM unnest($1::bigint[]) WITH ORDINALITY AS u (k, i) ORDER BY i) s`, keys); err != nil {
		return fmt.Errorf("lock contacts: %w", err)
	}
	return nil
}
