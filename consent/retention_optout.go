package consent

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// optedOutPage is how many contacts one look-up of opted-out contacts returns.
const optedOutPage = 1000

// optedOutByLedger lists, in contact order after $2, the workspace's contacts whose every
// marketing consent state is withdrawn, the last of them at or before $3: they opted out of all
// marketing then. The tracking purpose is not marketing, and an expired grant is still a grant
// (as for UnsubscribeAll). It reads consent_state's primary key in order and stops at $4.
const optedOutByLedger = `
	SELECT s.contact_id
	FROM consent_state s
	WHERE s.workspace_id = $1 AND s.contact_id > $2
		AND NOT EXISTS (SELECT 1 FROM purposes p WHERE p.workspace_id = $1 AND p.name = s.purpose AND p.kind = 'tracking')
	GROUP BY s.contact_id
	HAVING NOT bool_or(s.status = 'granted') AND max(s.updated_at) <= $3
	ORDER BY s.contact_id
	LIMIT $4`

// optedOutBySuppression lists the contacts whose address has an unsubscribed_all suppression
// entry made at or before the cutoff, a page of entries at a time: entries before ($2, $3) in
// (created_at, address_hash) order, newest first (the order of suppressions_workspace_created_idx),
// with the contacts of each address (compared as the suppression list does, in lower case).
// An erased entry has no address and no contact left.
const optedOutBySuppression = `
	SELECT sp.created_at, sp.address_hash, c.id
	FROM (
		SELECT created_at, address_hash, address FROM suppressions
		WHERE workspace_id = $1 AND (created_at, address_hash) < ($2, $3)
			AND reason = 'unsubscribed_all' AND address IS NOT NULL
		ORDER BY created_at DESC, address_hash DESC
		LIMIT $4
	) sp
	LEFT JOIN contacts c ON c.workspace_id = $1 AND lower(c.email) = lower(sp.address)
	ORDER BY sp.created_at DESC, sp.address_hash DESC`

// optedOut removes the marketing data of the workspace's contacts who opted out of all marketing
// at least p.OptedOutDays before now: by the ledger, then by the suppression list.
func (w *RetentionWorker) optedOut(ctx context.Context, workspaceID int64, p RetentionPolicy, now time.Time, removed map[string]int64) error {
	if len(w.OptedOut) == 0 {
		return nil
	}
	cutoff := now.Add(-days(p.OptedOutDays))
	var after int64
	for {
		rows, err := w.DB.Query(ctx, optedOutByLedger, workspaceID, after, cutoff, optedOutPage)
		if err != nil {
			return fmt.Errorf("retention: opted-out contacts of workspace %d: %w", workspaceID, err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return fmt.Errorf("retention: opted-out contacts of workspace %d: %w", workspaceID, err)
		}
		if err := w.purgeContacts(ctx, workspaceID, ids, removed); err != nil {
			return err
		}
		if len(ids) < optedOutPage {
			break
		}
		after = ids[len(ids)-1]
	}
	at, hash := cutoff.Add(time.Microsecond), []byte{}
	for {
		rows, err := w.DB.Query(ctx, optedOutBySuppression, workspaceID, at, hash, optedOutPage)
		if err != nil {
			return fmt.Errorf("retention: unsubscribed contacts of workspace %d: %w", workspaceID, err)
		}
		var ids []int64
		entries := 0
		var id *int64
		var lastHash []byte
		_, err = pgx.ForEachRow(rows, []any{&at, &lastHash, &id}, func() error {
			if len(hash) == 0 || string(lastHash) != string(hash) {
				entries++
				hash = append(hash[:0:0], lastHash...)
			}
			if id != nil {
				ids = append(ids, *id)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("retention: unsubscribed contacts of workspace %d: %w", workspaceID, err)
		}
		if err := w.purgeContacts(ctx, workspaceID, ids, removed); err != nil {
			return err
		}
		if entries < optedOutPage {
			return nil
		}
	}
}

// purgeContacts runs every OptOutPurger on ids, a few contacts per transaction (a contact has
// some sends and events, so a transaction removes about a batch of rows).
func (w *RetentionWorker) purgeContacts(ctx context.Context, workspaceID int64, ids []int64, removed map[string]int64) error {
	chunk := max(1, w.batch()/100)
	for len(ids) > 0 {
		part := ids[:min(chunk, len(ids))]
		ids = ids[len(part):]
		counts := make([]int64, len(w.OptedOut))
		err := pgx.BeginFunc(ctx, w.DB, func(tx pgx.Tx) error {
			for i, s := range w.OptedOut {
				n, err := s.Purger.PurgeOptedOut(ctx, tx, workspaceID, part)
				if err != nil {
					return fmt.Errorf("%s: %w", s.What, err)
				}
				counts[i] = n
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("retention: opted-out contacts of workspace %d: %w", workspaceID, err)
		}
		for i, s := range w.OptedOut {
			removed[s.What] += counts[i]
		}
	}
	return nil
}
