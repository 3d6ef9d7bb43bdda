package mailer

import (
	"context"
	"fmt"
	"time"

	"herald/consent"
	"herald/internal/db"
)

// Retention is the mailer's part of the retention policies (consent.RetentionWorker): the
// rendered content and attachments of final messages past the workspace's body_days, and a deleted workspace's
// messages.
type Retention struct{}

// retentionBodies empties the HTML and text bodies and the extra headers (which may carry
// personal data), and deletes the attachments (a data export sent to its subject), of at most $4 final messages of workspace $1 created from $2 on and sent (or,
// never sent, created) before $3, walking messages_body_kept_idx, which holds only messages that
// still have content: an emptied message leaves it. It returns how many it emptied and the
// creation time of the last message it looked at. Messages still queued, sending or deferred are
// untouched, and a message locked by its send worker is skipped, never waited for.
const retentionBodies = `
	WITH page AS (
		SELECT id, created_at FROM messages
		WHERE workspace_id = $1 AND created_at >= $2 AND created_at < $3
			AND (html_body <> '' OR text_body <> '' OR headers <> '{}'::jsonb)
		ORDER BY created_at LIMIT $4
	), emptied AS (
		UPDATE messages m SET html_body = '', text_body = '', headers = '{}'::jsonb
		FROM (SELECT id FROM messages WHERE id IN (SELECT id FROM page)
			AND status IN ('sent', 'failed', 'suppressed') AND coalesce(sent_at, created_at) < $3
			FOR UPDATE SKIP LOCKED) f
		WHERE m.id = f.id
		RETURNING m.id
	), attachments AS (
		DELETE FROM message_attachments WHERE message_id IN (SELECT id FROM emptied)
	)
	SELECT (SELECT count(*) FROM emptied), (SELECT count(*) FROM page), (SELECT max(created_at) FROM page)`

// PurgeAged empties the content of the workspace's final messages older than its body_days,
// batch messages per statement.
func (Retention) PurgeAged(ctx context.Context, q db.Querier, workspaceID int64, p consent.RetentionPolicy, now time.Time, batch int) (int64, error) {
	cutoff := now.Add(-time.Duration(p.BodyDays) * 24 * time.Hour)
	from := time.Unix(0, 0).UTC()
	var total int64
	for {
		var emptied, seen int64
		var last *time.Time
		if err := q.QueryRow(ctx, retentionBodies, workspaceID, from, cutoff, batch).Scan(&emptied, &seen, &last); err != nil {
			return total, fmt.Errorf("empty old message bodies: %w", err)
		}
		total += emptied
		if seen < int64(batch) || last == nil {
			return total, nil
		}
		// Messages left in the page (still open, or locked) share at most the last instant with
		// the next page; from there on the walk goes forward.
		if !last.After(from) {
			return total, nil
		}
		from = *last
	}
}

// PurgeWorkspace deletes a deleted workspace's messages, a batch at a time (their attachments
// and other dependents go by cascade).
func (Retention) PurgeWorkspace(ctx context.Context, q db.Querier, workspaceID int64, batch int) (int64, error) {
	n, err := consent.DeleteBatches(ctx, q, `DELETE FROM messages WHERE id = ANY (ARRAY(
		SELECT id FROM messages WHERE workspace_id = $1 LIMIT $2))`, workspaceID, batch)
	if err != nil {
		return n, fmt.Errorf("purge workspace messages: %w", err)
	}
	return n, nil
}

// StopWorkspace marks the unsent messages of a workspace being deleted suppressed (reason
// workspace_deleted), in the caller's transaction: their send jobs then find them final and send
// nothing.
func StopWorkspace(ctx context.Context, q db.Querier, workspaceID int64) (int64, error) {
	tag, err := q.Exec(ctx, `UPDATE messages SET status = 'suppressed', status_reason = 'workspace_deleted', updated_at = now()
		WHERE workspace_id = $1 AND status IN ('queued', 'deferred')`, workspaceID)
	if err != nil {
		return 0, fmt.Errorf("stop messages of deleted workspace: %w", err)
	}
	return tag.RowsAffected(), nil
}
