package tracking

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/consent"
	"herald/internal/db"
)

// Retention is the tracking package's part of the retention policies (consent.RetentionWorker):
// the tracking events of contacts who opted out of all marketing, events older than the
// workspace's tracking_days, and a deleted workspace's events and feedback reports.
type Retention struct{}

// retentionOptedOut deletes the events of the sends ($2) to the contacts of workspace $1,
// finding the sends by campaign_recipients_contact_idx and their events by
// tracking_events_recipient_idx.
const retentionOptedOut = `
	DELETE FROM tracking_events e
	USING campaign_recipients r JOIN campaigns c ON c.id = r.campaign_id
	WHERE r.contact_id = ANY ($2) AND c.workspace_id = $1 AND e.recipient_id = r.id AND e.workspace_id = $1`

// PurgeOptedOut deletes every tracking event of the contacts' campaign sends.
func (Retention) PurgeOptedOut(ctx context.Context, tx pgx.Tx, workspaceID int64, contactIDs []int64) (int64, error) {
	tag, err := tx.Exec(ctx, retentionOptedOut, workspaceID, contactIDs)
	if err != nil {
		return 0, fmt.Errorf("delete tracking events of opted-out contacts: %w", err)
	}
	return tag.RowsAffected(), nil
}

// retentionAged deletes the oldest events of workspace $1 from $2 up to (not including) $3, at
// most $4 of them, walking tracking_events_at_idx from $2, and returns how many it deleted and
// the time of the last. The caller moves $2 up to that time, so no batch reads again the index
// entries of rows an earlier batch deleted.
const retentionAged = `
	WITH d AS (
		DELETE FROM tracking_events WHERE ctid = ANY (ARRAY(
			SELECT ctid FROM tracking_events WHERE at >= $2 AND at < $3 AND workspace_id = $1
			ORDER BY at LIMIT $4))
			AND at < $3 AND workspace_id = $1
		RETURNING at
	)
	SELECT count(*), max(at) FROM d`

// PurgeAged deletes the workspace's events older than its tracking_days, batch rows per
// statement.
func (Retention) PurgeAged(ctx context.Context, q db.Querier, workspaceID int64, p consent.RetentionPolicy, now time.Time, batch int) (int64, error) {
	cutoff := now.Add(-time.Duration(p.TrackingDays) * 24 * time.Hour)
	from := time.Unix(0, 0).UTC()
	var total int64
	for {
		var n int64
		var last *time.Time
		if err := q.QueryRow(ctx, retentionAged, workspaceID, from, cutoff, batch).Scan(&n, &last); err != nil {
			return total, fmt.Errorf("delete old tracking events: %w", err)
		}
		total += n
		if n < int64(batch) || last == nil {
			return total, nil
		}
		from = *last
	}
}

// PurgeWorkspace deletes a deleted workspace's events, campaign by campaign (by
// tracking_events_campaign_idx; the table has no index on workspace_id), then its feedback
// reports.
func (Retention) PurgeWorkspace(ctx context.Context, q db.Querier, workspaceID int64, batch int) (int64, error) {
	rows, err := q.Query(ctx, `SELECT id FROM campaigns WHERE workspace_id = $1 ORDER BY id`, workspaceID)
	if err != nil {
		return 0, fmt.Errorf("purge workspace tracking events: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, fmt.Errorf("purge workspace tracking events: %w", err)
	}
	var total int64
	for _, id := range ids {
		for {
			tag, err := q.Exec(ctx, `DELETE FROM tracking_events WHERE ctid = ANY (ARRAY(
				SELECT ctid FROM tracking_events WHERE campaign_id = $1 LIMIT $2)) AND campaign_id = $1`, id, batch)
			if err != nil {
				return total, fmt.Errorf("purge workspace tracking events: %w", err)
			}
			total += tag.RowsAffected()
			if tag.RowsAffected() < int64(batch) {
				break
			}
		}
	}
	n, err := consent.DeleteBatches(ctx, q, `DELETE FROM feedback_events WHERE id = ANY (ARRAY(
		SELECT id FROM feedback_events WHERE workspace_id = $1 LIMIT $2))`, workspaceID, batch)
	total += n
	if err != nil {
		return total, fmt.Errorf("purge workspace feedback events: %w", err)
	}
	return total, nil
}
