package templates

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"herald/internal/db"
)

const (
	// templateInsert stores the next version of a name. Two concurrent saves may compute the same
	// version; the loser inserts nothing (ON CONFLICT, so a caller's transaction is not aborted)
	// and Create tries again with a fresh snapshot.
	templateInsert = `
		INSERT INTO templates (workspace_id, name, version, subject, html, text)
		SELECT $1, $2, coalesce(max(version), 0) + 1, $3, $4, $5
		FROM templates WHERE workspace_id = $1 AND name = $2
		ON CONFLICT (workspace_id, name, version) DO NOTHING
		RETURNING version, created_at`

	templateGetLatest = `
		SELECT name, version, subject, html, text, created_at FROM templates
		WHERE workspace_id = $1 AND name = $2
		ORDER BY version DESC LIMIT 1`

	templateGetVersion = `
		SELECT name, version, subject, html, text, created_at FROM templates
		WHERE workspace_id = $1 AND name = $2 AND version = $3`
)

// createAttempts bounds retries when concurrent saves of one name race for a version number.
const createAttempts = 10

// ErrBusy is returned by Create when concurrent saves of the same name kept winning the race.
var ErrBusy = errors.New("the template is being saved concurrently; try again")

// Create stores in as the next version (1 for a new name) of the named template in the workspace.
// Every part must parse (see Compile); field problems are returned as *PartError. The HTML source
// is stored as written: rendering sanitises the output (see the package doc).
func Create(ctx context.Context, q db.Querier, workspaceID int64, in Input) (Template, error) {
	if err := in.validate(); err != nil {
		return Template{}, err
	}
	t := Template{Name: in.Name, Subject: in.Subject, HTML: in.HTML, Text: in.Text}
	if _, err := Compile(t); err != nil {
		return Template{}, err
	}
	for range createAttempts {
		err := q.QueryRow(ctx, templateInsert, workspaceID, t.Name, t.Subject, t.HTML, t.Text).
			Scan(&t.Version, &t.CreatedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return Template{}, fmt.Errorf("create template %q: %w", in.Name, err)
		}
		return t, nil
	}
	return Template{}, fmt.Errorf("create template %q: %w", in.Name, ErrBusy)
}

// Get returns a version of the named template in the workspace; version 0 means the latest. It
// returns an error wrapping db.ErrNotFound when there is no such name or version there.
func Get(ctx context.Context, q db.Querier, workspaceID int64, name string, version int) (Template, error) {
	if version < 0 || ValidName(name) != nil {
		return Template{}, fmt.Errorf("template %q version %d: %w", name, version, db.ErrNotFound)
	}
	var row pgx.Row
	if version == 0 {
		row = q.QueryRow(ctx, templateGetLatest, workspaceID, name)
	} else {
		row = q.QueryRow(ctx, templateGetVersion, workspaceID, name, version)
	}
	var t Template
	err := row.Scan(&t.Name, &t.Version, &t.Subject, &t.HTML, &t.Text, &t.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Template{}, fmt.Errorf("template %q version %d: %w", name, version, db.ErrNotFound)
	}
	if err != nil {
		return Template{}, fmt.Errorf("get template %q: %w", name, err)
	}
	return t, nil
}
