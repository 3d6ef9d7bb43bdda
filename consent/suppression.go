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
	ReasonHardBounce = "hard_bounce"
	ReasonComplaint  = "complaint"
	ReasonManual     = "manual"
	ReasonErased     = "erased"
)

// Suppression is one entry of a workspace's suppression list.
type Suppression struct {
	WorkspaceID int64
	Address     string
	Reason      string
	Detail      string
	MessageID   *string // the message whose outcome caused it, if any
	CreatedAt   time.Time
}

// Suppress adds an address to the workspace's suppression list. An address already listed keeps
// its first entry; added reports whether this call listed it.
func Suppress(ctx context.Context, q db.Querier, s Suppression) (added bool, err error) {
	tag, err := q.Exec(ctx, `
		INSERT INTO suppressions (workspace_id, address, reason, detail, message_id)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (workspace_id, address) DO NOTHING`,
		s.WorkspaceID, s.Address, s.Reason, s.Detail, s.MessageID)
	if err != nil {
		return false, fmt.Errorf("suppress address: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// SuppressionGet returns the workspace's entry for address, or db.ErrNotFound.
func SuppressionGet(ctx context.Context, q db.Querier, workspaceID int64, address string) (Suppression, error) {
	s := Suppression{WorkspaceID: workspaceID, Address: address}
	err := q.QueryRow(ctx, `
		SELECT reason, detail, message_id::text, created_at FROM suppressions
		WHERE workspace_id = $1 AND address = $2`, workspaceID, address).Scan(&s.Reason, &s.Detail, &s.MessageID, &s.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, fmt.Errorf("get suppression: %w", db.ErrNotFound)
	}
	if err != nil {
		return s, fmt.Errorf("get suppression: %w", err)
	}
	return s, nil
}
