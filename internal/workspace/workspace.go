// Package workspace owns workspaces (one per CRM customer) and their API keys. Every other table
// carries a workspace_id, and every request is bound to exactly one workspace by its key, so a key
// of one workspace can never name another's rows.
package workspace

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5"

	"herald/internal/db"
)

// Workspace is one CRM customer.
type Workspace struct {
	ID   int64
	Name string
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidName reports whether name can be a workspace name: lower-case letters, digits, _ and -.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("workspace name %q: use 1-63 lower-case letters, digits, '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

// Ensure returns the workspace called name, creating it if it is new. A deleted workspace's name
// stays taken until the retention job purges it, and nothing new is made in it: ErrDeleted.
func Ensure(ctx context.Context, q db.Querier, name string) (Workspace, error) {
	if err := ValidName(name); err != nil {
		return Workspace{}, err
	}
	w := Workspace{Name: name}
	var deleted bool
	err := q.QueryRow(ctx, `
		WITH ins AS (
			INSERT INTO workspaces (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id
		)
		SELECT id, false FROM ins UNION ALL SELECT id, deleted_at IS NOT NULL FROM workspaces WHERE name = $1 LIMIT 1`,
		name).Scan(&w.ID, &deleted)
	if err != nil {
		return Workspace{}, fmt.Errorf("ensure workspace: %w", err)
	}
	if deleted {
		return Workspace{}, fmt.Errorf("workspace %q: %w", name, ErrDeleted)
	}
	return w, nil
}

// Get returns the workspace called name.
func Get(ctx context.Context, q db.Querier, name string) (Workspace, error) {
	w := Workspace{Name: name}
	err := q.QueryRow(ctx, `SELECT id FROM workspaces WHERE name = $1`, name).Scan(&w.ID)
	if errors.Is(err, pgx.ErrNoRows) {
		return Workspace{}, fmt.Errorf("workspace %q: %w", name, db.ErrNotFound)
	}
	if err != nil {
		return Workspace{}, fmt.Errorf("get workspace: %w", err)
	}
	return w, nil
}
