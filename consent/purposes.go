package consent

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/internal/db"
)

// Purpose is a topic a contact consents to (newsletter, product-updates, ...), with the notice
// text currently shown when asking for consent and its version.
type Purpose struct {
	ID            int64     `json:"-"`
	WorkspaceID   int64     `json:"-"`
	Name          string    `json:"name"`
	Title         string    `json:"title"`
	Description   string    `json:"description"`
	Notice        string    `json:"notice"`
	NoticeVersion int       `json:"notice_version"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// PurposeNameRE is the form of a purpose name.
var PurposeNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

const purposeColumns = `id, workspace_id, name, title, description, notice, notice_version, created_at, updated_at`

func scanPurpose(row pgx.Row) (Purpose, error) {
	var p Purpose
	err := row.Scan(&p.ID, &p.WorkspaceID, &p.Name, &p.Title, &p.Description, &p.Notice, &p.NoticeVersion, &p.CreatedAt, &p.UpdatedAt)
	return p, err
}

// PurposeSave creates the workspace's purpose or updates its title, description and notice. A
// changed notice text gets the next version number, and every version's text is kept.
func PurposeSave(ctx context.Context, tx pgx.Tx, p Purpose) (saved Purpose, created bool, err error) {
	if !PurposeNameRE.MatchString(p.Name) {
		return p, false, fieldErr("name", "must be 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit")
	}
	if p.Title == "" || !printable(p.Title, 200) {
		return p, false, fieldErr("title", "must be 1-200 printable characters")
	}
	if !printable(p.Description, 1000) {
		return p, false, fieldErr("description", "must be at most 1000 printable characters")
	}
	if p.Notice == "" || len(p.Notice) > 10000 {
		return p, false, fieldErr("notice", "must be 1-10000 bytes of text")
	}
	err = tx.QueryRow(ctx, `
		INSERT INTO purposes (workspace_id, name, title, description, notice) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (workspace_id, name) DO UPDATE SET title = EXCLUDED.title, description = EXCLUDED.description,
			notice = EXCLUDED.notice,
			notice_version = purposes.notice_version + CASE WHEN purposes.notice = EXCLUDED.notice THEN 0 ELSE 1 END,
			updated_at = now()
		RETURNING `+purposeColumns+`, (xmax = 0)`, p.WorkspaceID, p.Name, p.Title, p.Description, p.Notice).
		Scan(&saved.ID, &saved.WorkspaceID, &saved.Name, &saved.Title, &saved.Description, &saved.Notice,
			&saved.NoticeVersion, &saved.CreatedAt, &saved.UpdatedAt, &created)
	if err != nil {
		return saved, false, fmt.Errorf("save purpose: %w", err)
	}
	_, err = tx.Exec(ctx, `INSERT INTO purpose_notices (purpose_id, version, notice) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, saved.ID, saved.NoticeVersion, saved.Notice)
	if err != nil {
		return saved, false, fmt.Errorf("save purpose notice: %w", err)
	}
	return saved, created, nil
}

// PurposeGet returns the workspace's purpose by name, or an error wrapping db.ErrNotFound.
func PurposeGet(ctx context.Context, q db.Querier, workspaceID int64, name string) (Purpose, error) {
	p, err := scanPurpose(q.QueryRow(ctx, `SELECT `+purposeColumns+` FROM purposes WHERE workspace_id = $1 AND name = $2`, workspaceID, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return p, fmt.Errorf("get purpose: %w", db.ErrNotFound)
	}
	if err != nil {
		return p, fmt.Errorf("get purpose: %w", err)
	}
	return p, nil
}

// PurposeByID returns the workspace's purpose by id, or an error wrapping db.ErrNotFound.
func PurposeByID(ctx context.Context, q db.Querier, workspaceID, id int64) (Purpose, error) {
	p, err := scanPurpose(q.QueryRow(ctx, `SELECT `+purposeColumns+` FROM purposes WHERE workspace_id = $1 AND id = $2`, workspaceID, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return p, fmt.Errorf("get purpose: %w", db.ErrNotFound)
	}
	if err != nil {
		return p, fmt.Errorf("get purpose: %w", err)
	}
	return p, nil
}

// Purposes lists the workspace's purposes by name.
func Purposes(ctx context.Context, q db.Querier, workspaceID int64) ([]Purpose, error) {
	rows, err := q.Query(ctx, `SELECT `+purposeColumns+` FROM purposes WHERE workspace_id = $1 ORDER BY name`, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("list purposes: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Purpose, error) { return scanPurpose(r) })
	if err != nil {
		return nil, fmt.Errorf("list purposes: %w", err)
	}
	return out, nil
}
