package workspace

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/internal/db"
)

// ErrDeleted is returned by SoftDelete, and by Ensure, for a workspace that is already deleted.
var ErrDeleted = errors.New("workspace is already deleted")

// SoftDelete marks the workspace called name deleted at now, in q (the caller's transaction, which
// also stops the workspace's sending). From then on its API keys are refused (Authenticate);
// the retention job deletes the workspace and everything it holds once its grace period has
// passed. It returns the workspace; an unknown name wraps db.ErrNotFound, a deleted one
// ErrDeleted.
func SoftDelete(ctx context.Context, q db.Querier, name string, now time.Time) (Workspace, error) {
	w := Workspace{Name: name}
	var deleted *time.Time
	err := q.QueryRow(ctx, `SELECT id, deleted_at FROM workspaces WHERE name = $1 FOR UPDATE`, name).Scan(&w.ID, &deleted)
	if errors.Is(err, pgx.ErrNoRows) {
		return w, fmt.Errorf("workspace %q: %w", name, db.ErrNotFound)
	}
	if err != nil {
		return w, fmt.Errorf("delete workspace: %w", err)
	}
	if deleted != nil {
		return w, fmt.Errorf("workspace %q: %w", name, ErrDeleted)
	}
	if _, err := q.Exec(ctx, `UPDATE workspaces SET deleted_at = $2 WHERE id = $1`, w.ID, now); err != nil {
		return w, fmt.Errorf("delete workspace: %w", err)
	}
	return w, nil
}
