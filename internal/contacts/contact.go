package contacts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/internal/db"
	"herald/internal/httpx"
)

// Contact is one person as a workspace's CRM knows them, keyed by the CRM's own id.
type Contact struct {
	ID          int64          `json:"-"`
	WorkspaceID int64          `json:"-"`
	ExternalID  string         `json:"external_id"`
	Email       string         `json:"email"`
	Name        string         `json:"name"`
	Locale      string         `json:"locale"`
	Timezone    string         `json:"timezone"`
	Attributes  map[string]any `json:"attributes"`
	CreatedAt   time.Time      `json:"created_at"`
	UpdatedAt   time.Time      `json:"updated_at"`
}

const contactColumns = `id, workspace_id, external_id, email, name, locale, timezone, attributes, created_at, updated_at`

// contactGet selects one contact of a workspace.
const contactGet = `SELECT ` + contactColumns + ` FROM contacts WHERE workspace_id = $1 AND external_id = $2`

// contactUpsert inserts a contact or replaces every field of the workspace's contact with the same
// external id; created is true when the row is new (xmax is 0 only for a freshly inserted tuple).
const contactUpsert = `
INSERT INTO contacts (workspace_id, external_id, email, name, locale, timezone, attributes)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (workspace_id, external_id) DO UPDATE SET
	email = EXCLUDED.email, name = EXCLUDED.name, locale = EXCLUDED.locale,
	timezone = EXCLUDED.timezone, attributes = EXCLUDED.attributes, updated_at = now()
RETURNING ` + contactColumns + `, (xmax = 0) AS created`

// Get returns the workspace's contact with the given external id, or an error wrapping
// db.ErrNotFound when there is none (contacts of other workspaces are never found).
func Get(ctx context.Context, q db.Querier, workspaceID int64, externalID string) (Contact, error) {
	c, err := scanContact(q.QueryRow(ctx, contactGet, workspaceID, externalID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Contact{}, fmt.Errorf("get contact: %w", db.ErrNotFound)
	}
	if err != nil {
		return Contact{}, fmt.Errorf("get contact: %w", err)
	}
	return c, nil
}

// Upsert validates in and creates or fully replaces the workspace's contact with in.ExternalID.
// An invalid field is returned as a 422 *httpx.Problem naming it.
func Upsert(ctx context.Context, q db.Querier, workspaceID int64, in Input) (c Contact, created bool, err error) {
	n, fe := in.normalize(nil)
	if fe != nil {
		return Contact{}, false, httpx.Invalid(fe.Field, fe.Detail)
	}
	row := q.QueryRow(ctx, contactUpsert, workspaceID, n.externalID, n.email, n.name, n.locale, n.timezone, string(n.attributes))
	c, err = scanContact(row, &created)
	if err != nil {
		return Contact{}, false, fmt.Errorf("upsert contact: %w", err)
	}
	return c, created, nil
}

// scanContact scans contactColumns and then extra destinations.
func scanContact(row pgx.Row, extra ...any) (Contact, error) {
	var c Contact
	var attrs []byte
	dest := append([]any{&c.ID, &c.WorkspaceID, &c.ExternalID, &c.Email, &c.Name, &c.Locale,
		&c.Timezone, &attrs, &c.CreatedAt, &c.UpdatedAt}, extra...)
	if err := row.Scan(dest...); err != nil {
		return Contact{}, err
	}
	dec := json.NewDecoder(bytes.NewReader(attrs))
	dec.UseNumber()
	if err := dec.Decode(&c.Attributes); err != nil {
		return Contact{}, fmt.Errorf("decode attributes: %w", err)
	}
	if c.Attributes == nil {
		c.Attributes = map[string]any{}
	}
	return c, nil
}
