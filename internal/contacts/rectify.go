package contacts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"herald/internal/httpx"
)

// Rectified names the contact fields a rectification can change, in the order it lists them.
var Rectified = []string{"email", "name", "locale", "timezone", "attributes"}

// ActionRectify is the audit_log action of a change to a contact through the API.
const ActionRectify = "contact.rectify"

// contactLock reads the workspace's contact FOR UPDATE, and whether its attributes equal $3 (as
// jsonb: key order and spacing do not count).
const contactLock = `SELECT ` + contactColumns + `, attributes = $3::jsonb FROM contacts
	WHERE workspace_id = $1 AND external_id = $2 FOR UPDATE`

// contactInsert inserts a new contact, or nothing when a concurrent transaction inserted it first.
const contactInsert = `
INSERT INTO contacts (workspace_id, external_id, email, name, locale, timezone, attributes)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (workspace_id, external_id) DO NOTHING
RETURNING ` + contactColumns

const contactUpdate = `
UPDATE contacts SET email = $3, name = $4, locale = $5, timezone = $6, attributes = $7, updated_at = now()
WHERE workspace_id = $1 AND id = $2
RETURNING ` + contactColumns

// rectifyAudit is the rectification record: who changed which fields of which contact. It
// names the fields only, never their old or new values, so the audit log holds no personal data.
const rectifyAudit = `INSERT INTO audit_log (workspace_id, actor, action, target, detail)
VALUES ($1, $2, '` + ActionRectify + `', $3, $4)`

// UpsertAs is Upsert for a change made on behalf of actor (such as "api_key:7"), in tx: a new
// contact is created; an existing one is updated only when a field differs, and then the audit
// log records a rectification (action contact.rectify, target contact:ID, detail {"fields": [the
// names of the fields that changed]}, actor, time) in the same transaction. A PUT that changes
// nothing writes nothing and leaves updated_at alone. changed lists the fields changed (none for a
// new contact).
func UpsertAs(ctx context.Context, tx pgx.Tx, workspaceID int64, in Input, actor string) (c Contact, created bool, changed []string, err error) {
	n, fe := in.normalize(nil)
	if fe != nil {
		return Contact{}, false, nil, httpx.Invalid(fe.Field, fe.Detail)
	}
	// Twice at most: when the contact is missing and a concurrent transaction inserts it between
	// our read and our insert, the second round finds it.
	for range 2 {
		var sameAttrs bool
		old, err := scanContact(tx.QueryRow(ctx, contactLock, workspaceID, n.externalID, string(n.attributes)), &sameAttrs)
		if errors.Is(err, pgx.ErrNoRows) {
			c, err = scanContact(tx.QueryRow(ctx, contactInsert, workspaceID, n.externalID, n.email, n.name, n.locale,
				n.timezone, string(n.attributes)))
			if errors.Is(err, pgx.ErrNoRows) {
				continue
			}
			if err != nil {
				return Contact{}, false, nil, fmt.Errorf("upsert contact: insert: %w", err)
			}
			return c, true, nil, nil
		}
		if err != nil {
			return Contact{}, false, nil, fmt.Errorf("upsert contact: read: %w", err)
		}
		changed = changedFields(old, n, sameAttrs)
		if len(changed) == 0 {
			return old, false, nil, nil
		}
		c, err = scanContact(tx.QueryRow(ctx, contactUpdate, workspaceID, old.ID, n.email, n.name, n.locale,
			n.timezone, string(n.attributes)))
		if err != nil {
			return Contact{}, false, nil, fmt.Errorf("upsert contact: update: %w", err)
		}
		detail, err := json.Marshal(map[string]any{"fields": changed})
		if err != nil {
			return Contact{}, false, nil, fmt.Errorf("upsert contact: %w", err)
		}
		if _, err := tx.Exec(ctx, rectifyAudit, workspaceID, actor, "contact:"+strconv.FormatInt(c.ID, 10), detail); err != nil {
			return Contact{}, false, nil, fmt.Errorf("upsert contact: record rectification: %w", err)
		}
		return c, false, changed, nil
	}
	return Contact{}, false, nil, errors.New("upsert contact: the contact was neither found nor inserted")
}

// changedFields lists the names of old's fields that n changes, in Rectified's order.
func changedFields(old Contact, n normalized, sameAttrs bool) []string {
	var out []string
	for i, diff := range []bool{old.Email != n.email, old.Name != n.name, old.Locale != n.locale,
		old.Timezone != n.timezone, !sameAttrs} {
		if diff {
			out = append(out, Rectified[i])
		}
	}
	return out
}
