package campaigns

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"herald/consent"
	"herald/internal/db"
)

// Retention is the campaigns package's part of the retention policies
// (consent.RetentionWorker): the personal fields of opted-out contacts' sends, and a deleted
// workspace's campaigns and recipients.
type Retention struct{}

// retentionOptedOut empties the address and SMTP reply of the contacts' final sends, found by
// campaign_recipients_contact_idx; ids, statuses and times stay, so campaign counts do not move.
// Open sends (queued, sending, deferred) are left to their workers, which need the address; a
// later run empties them once final.
const retentionOptedOut = `
	UPDATE campaign_recipients r SET address = '', smtp_reply = ''
	FROM campaigns c
	WHERE r.contact_id = ANY ($2) AND c.id = r.campaign_id AND c.workspace_id = $1
		AND r.status IN ('sent', 'suppressed', 'failed', 'cancelled')
		AND (r.address <> '' OR r.smtp_reply <> '')`

// PurgeOptedOut empties the personal fields of the contacts' final campaign sends.
func (Retention) PurgeOptedOut(ctx context.Context, tx pgx.Tx, workspaceID int64, contactIDs []int64) (int64, error) {
	tag, err := tx.Exec(ctx, retentionOptedOut, workspaceID, contactIDs)
	if err != nil {
		return 0, fmt.Errorf("empty sends of opted-out contacts: %w", err)
	}
	return tag.RowsAffected(), nil
}

// PurgeWorkspace deletes a deleted workspace's campaign recipients and links, a batch at a time
// per campaign (by campaign_recipients_campaign_idx), then its campaigns.
func (Retention) PurgeWorkspace(ctx context.Context, q db.Querier, workspaceID int64, batch int) (int64, error) {
	rows, err := q.Query(ctx, `SELECT id FROM campaigns WHERE workspace_id = $1 ORDER BY id`, workspaceID)
	if err != nil {
		return 0, fmt.Errorf("purge workspace campaigns: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, fmt.Errorf("purge workspace campaigns: %w", err)
	}
	var total int64
	for _, id := range ids {
		for _, query := range []string{
			`DELETE FROM campaign_recipients WHERE id = ANY (ARRAY(
				SELECT id FROM campaign_recipients WHERE campaign_id = $1 ORDER BY id LIMIT $2))`,
			`DELETE FROM campaign_links WHERE id = ANY (ARRAY(
				SELECT id FROM campaign_links WHERE campaign_id = $1 LIMIT $2))`,
		} {
			n, err := consent.DeleteBatches(ctx, q, query, id, batch)
			total += n
			if err != nil {
				return total, fmt.Errorf("purge workspace campaign %d: %w", id, err)
			}
		}
	}
	tag, err := q.Exec(ctx, `DELETE FROM campaigns WHERE workspace_id = $1`, workspaceID)
	if err != nil {
		return total, fmt.Errorf("purge workspace campaigns: %w", err)
	}
	return total + tag.RowsAffected(), nil
}

// CancelWorkspace cancels every campaign of a workspace being deleted that has not finished, in
// the caller's transaction: no more of its email goes out (the sweeper closes the recipients).
func CancelWorkspace(ctx context.Context, q db.Querier, workspaceID int64) (int64, error) {
	tag, err := q.Exec(ctx, `UPDATE campaigns SET status = 'cancelled', updated_at = now()
		WHERE workspace_id = $1 AND status IN ('draft', 'scheduled', 'sending', 'paused')`, workspaceID)
	if err != nil {
		return 0, fmt.Errorf("cancel campaigns of deleted workspace: %w", err)
	}
	return tag.RowsAffected(), nil
}
