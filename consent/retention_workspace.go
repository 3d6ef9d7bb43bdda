package consent

import (
	"context"
	"fmt"
	"time"

	"herald/internal/db"
)

// workspaceBatches are the consent package's (and the contacts') tables of a deleted workspace,
// deleted a batch at a time before the workspace row: each statement deletes at most $2 rows of
// workspace $1, found by an index that starts with workspace_id. Contacts go after the other
// packages' rows (messages name contacts); the ledger's events and the audit log are
// append-only and go only with the workspace row, by its cascade.
var workspaceBatches = []struct{ table, query string }{
	{"consent_evidence", `DELETE FROM consent_evidence WHERE event_id = ANY (ARRAY(
		SELECT event_id FROM consent_evidence WHERE workspace_id = $1 LIMIT $2))`},
	{"consent_state", `DELETE FROM consent_state WHERE workspace_id = $1 AND ctid = ANY (ARRAY(
		SELECT ctid FROM consent_state WHERE workspace_id = $1 LIMIT $2))`},
	{"suppressions", `DELETE FROM suppressions WHERE workspace_id = $1 AND address_hash = ANY (ARRAY(
		SELECT address_hash FROM suppressions WHERE workspace_id = $1 LIMIT $2))`},
	{"subscribe_requests", `DELETE FROM subscribe_requests WHERE id = ANY (ARRAY(
		SELECT id FROM subscribe_requests WHERE workspace_id = $1 LIMIT $2))`},
	{"privacy_requests", `DELETE FROM privacy_requests WHERE id = ANY (ARRAY(
		SELECT id FROM privacy_requests WHERE workspace_id = $1 ORDER BY id LIMIT $2))`},
	{"contacts", `DELETE FROM contacts WHERE id = ANY (ARRAY(
		SELECT id FROM contacts WHERE workspace_id = $1 ORDER BY id LIMIT $2))`},
}

// purgeWorkspace deletes a deleted workspace whose grace period has passed: every
// WorkspacePurger's rows, then the consent package's, in batches, then the workspace row, whose
// cascade removes what is left. It checks before each step that the workspace is still deleted,
// and returns the rows deleted in batches.
func (w *RetentionWorker) purgeWorkspace(ctx context.Context, workspaceID int64, now time.Time) (int64, error) {
	var total int64
	w.logger().InfoContext(ctx, "retention: purging deleted workspace", "workspace_id", workspaceID)
	for _, p := range w.Workspace {
		if err := stillDeleted(ctx, w.DB, workspaceID); err != nil {
			return total, err
		}
		n, err := p.PurgeWorkspace(ctx, w.DB, workspaceID, w.batch())
		total += n
		if err != nil {
			return total, fmt.Errorf("retention: purge workspace %d: %w", workspaceID, err)
		}
	}
	if err := stillDeleted(ctx, w.DB, workspaceID); err != nil {
		return total, err
	}
	for _, b := range workspaceBatches {
		n, err := DeleteBatches(ctx, w.DB, b.query, workspaceID, w.batch())
		total += n
		if err != nil {
			return total, fmt.Errorf("retention: purge workspace %d: %s: %w", workspaceID, b.table, err)
		}
	}
	if _, err := w.DB.Exec(ctx, `DELETE FROM workspaces WHERE id = $1 AND deleted_at IS NOT NULL`, workspaceID); err != nil {
		return total, fmt.Errorf("retention: purge workspace %d: %w", workspaceID, err)
	}
	w.logger().InfoContext(ctx, "retention: deleted workspace purged", "workspace_id", workspaceID, "rows", total)
	return total, nil
}

// stillDeleted fails unless the workspace is (still) marked deleted.
func stillDeleted(ctx context.Context, q db.Querier, workspaceID int64) error {
	var deleted bool
	if err := q.QueryRow(ctx, `SELECT deleted_at IS NOT NULL FROM workspaces WHERE id = $1`, workspaceID).Scan(&deleted); err != nil {
		return fmt.Errorf("retention: workspace %d: %w", workspaceID, err)
	}
	if !deleted {
		return fmt.Errorf("retention: workspace %d is no longer deleted; purge stopped", workspaceID)
	}
	return nil
}

// DeleteBatches runs query, which deletes at most $2 rows of those that $1 (a workspace or a
// campaign id) names, until a run deletes fewer than batch rows, and returns the rows deleted.
// Each run is its own transaction when q is a pool. The retention steps of other packages use it
// for their tables of a deleted workspace.
func DeleteBatches(ctx context.Context, q db.Querier, query string, key int64, batch int) (int64, error) {
	var total int64
	for {
		tag, err := q.Exec(ctx, query, key, batch)
		if err != nil {
			return total, err
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(batch) {
			return total, nil
		}
	}
}
