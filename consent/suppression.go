package consent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/internal/db"
)

// Suppression reasons.
const (
	ReasonUnsubscribedAll = "unsubscribed_all"
	ReasonHardBounce      = "hard_bounce"
	ReasonComplaint       = "complaint"
	ReasonManual          = "manual"
	ReasonErased          = "erased"
)

// Reasons lists the suppression reasons.
var Reasons = []string{ReasonUnsubscribedAll, ReasonHardBounce, ReasonComplaint, ReasonErased, ReasonManual}

// Suppression is one entry of a workspace's suppression list. Address is empty once erased; the
// entry itself is found by the keyed hash of the address.
type Suppression struct {
	WorkspaceID int64
	Address     string
	AddressHash []byte
	Reason      string
	Detail      string
	MessageID   *string // the message whose outcome caused it, if any
	Actor       string
	CreatedAt   time.Time
}

// Suppress adds an address to the workspace's suppression list. An address already listed keeps
// its first entry; added reports whether this call listed it.
func (s *Service) Suppress(ctx context.Context, q db.Querier, sp Suppression) (added bool, err error) {
	addr := &sp.Address
	if sp.Address == "" || sp.Reason == ReasonErased {
		addr = nil // an erased address is kept only as its hash
	}
	if sp.AddressHash == nil {
		sp.AddressHash = s.Keys.AddressHash(sp.WorkspaceID, sp.Address)
	}
	tag, err := q.Exec(ctx, `
		INSERT INTO suppressions (workspace_id, address_hash, address, reason, detail, message_id, actor)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (workspace_id, address_hash) DO NOTHING`,
		sp.WorkspaceID, sp.AddressHash, addr, sp.Reason, sp.Detail, sp.MessageID, sp.Actor)
	if err != nil {
		return false, fmt.Errorf("suppress address: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

const suppressionColumns = `workspace_id, address_hash, coalesce(address, ''), reason, detail, message_id::text, actor, created_at`

func scanSuppression(row pgx.Row) (Suppression, error) {
	var sp Suppression
	err := row.Scan(&sp.WorkspaceID, &sp.AddressHash, &sp.Address, &sp.Reason, &sp.Detail, &sp.MessageID, &sp.Actor, &sp.CreatedAt)
	return sp, err
}

// SuppressionGet returns the workspace's entry for address, or an error wrapping db.ErrNotFound.
func (s *Service) SuppressionGet(ctx context.Context, q db.Querier, workspaceID int64, address string) (Suppression, error) {
	sp, err := scanSuppression(q.QueryRow(ctx, `SELECT `+suppressionColumns+` FROM suppressions
		WHERE workspace_id = $1 AND address_hash = $2`, workspaceID, s.Keys.AddressHash(workspaceID, address)))
	if errors.Is(err, pgx.ErrNoRows) {
		return sp, fmt.Errorf("get suppression: %w", db.ErrNotFound)
	}
	if err != nil {
		return sp, fmt.Errorf("get suppression: %w", err)
	}
	return sp, nil
}

// Unsuppress removes the workspace's entry for address and returns it (db.ErrNotFound when there
// is none). Only reasons in allowed are removed; others are left and reported as not found.
func (s *Service) Unsuppress(ctx context.Context, q db.Querier, workspaceID int64, address string, allowed ...string) (Suppression, error) {
	if len(allowed) == 0 {
		allowed = Reasons
	}
	sp, err := scanSuppression(q.QueryRow(ctx, `DELETE FROM suppressions
		WHERE workspace_id = $1 AND address_hash = $2 AND reason = ANY ($3)
		RETURNING `+suppressionColumns, workspaceID, s.Keys.AddressHash(workspaceID, address), allowed))
	if errors.Is(err, pgx.ErrNoRows) {
		return sp, fmt.Errorf("remove suppression: %w", db.ErrNotFound)
	}
	if err != nil {
		return sp, fmt.Errorf("remove suppression: %w", err)
	}
	return sp, nil
}
