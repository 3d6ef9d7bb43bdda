package contacts

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"herald/internal/db"
)

// The contact row's share of a person's data-subject rights. The consent package (which imports
// this one, so it cannot be imported back) wraps these in its DataPart for the contact.

// ExportByID returns the workspace's contact id with every field and attribute, or an error
// wrapping db.ErrNotFound.
func ExportByID(ctx context.Context, q db.Querier, workspaceID, id int64) (Contact, error) {
	c, err := scanContact(q.QueryRow(ctx, `SELECT `+contactColumns+` FROM contacts WHERE workspace_id = $1 AND id = $2`,
		workspaceID, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("export contact: %w", db.ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("export contact: %w", err)
	}
	return c, nil
}

// Erase empties the personal fields of the workspace's contact id in tx and gives it the external
// id erasedID (a keyed hash of the CRM's id: consent.Keys.ErasedExternalID). The row stays: its
// id is what the ledger, the send logs and the privacy requests name, and an empty address is
// what every sender reads as erased. It reports 1 when it changed the row, 0 when it was erased
// already.
func Erase(ctx context.Context, tx pgx.Tx, workspaceID, id int64, erasedID string) (int64, error) {
	tag, err := tx.Exec(ctx, `UPDATE contacts SET external_id = $3, email = '', name = '', locale = '', timezone = '',
		attributes = '{}', updated_at = now()
		WHERE workspace_id = $1 AND id = $2
			AND (email <> '' OR name <> '' OR locale <> '' OR timezone <> '' OR external_id <> $3 OR attributes <> '{}')`,
		workspaceID, id, erasedID)
	if err != nil {
		return 0, fmt.Errorf("erase contact: %w", err)
	}
	return tag.RowsAffected(), nil
}
