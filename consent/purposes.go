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
// text currently shown when asking for consent and its version. Kind is PurposeMarketing for the
// topics campaigns are sent for, or PurposeTracking for the workspace's one tracking purpose
// (named TrackingPurpose), which governs the open pixel and click tracking and is never a topic.
type Purpose struct {
	ID            int64     `json:"-"`
	WorkspaceID   int64     `json:"-"`
	Name          string    `json:"name"`
	Kind          string    `json:"kind"`
	Title         string    `json:"title"`
	Description   string    `json:"description"`
	Notice        string    `json:"notice"`
	NoticeVersion int       `json:"notice_version"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// PurposeNameRE is the form of a purpose name.
var PurposeNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Purpose kinds (purposes.kind).
const (
	PurposeMarketing = "marketing"
	PurposeTracking  = "tracking"
)

const purposeColumns = `id, workspace_id, name, kind, title, description, notice, notice_version, created_at, updated_at`

func scanPurpose(row pgx.Row) (Purpose, error) {
	var p Purpose
	err := row.Scan(&p.ID, &p.WorkspaceID, &p.Name, &p.Kind, &p.Title, &p.Description, &p.Notice, &p.NoticeVersion,
		&p.CreatedAt, &p.UpdatedAt)
	return p, err
}

// PurposeSave creates the workspace's purpose or updates its title, description and notice. A
// changed notice text gets the next version number, and every version's text is kept. The name
// TrackingPurpose belongs to the tracking purpose: saving it (Kind empty or PurposeTracking)
// edits that purpose, creating it when missing; a marketing purpose of that name, or a tracking
// purpose of another name, is a *FieldError. The kind of an existing purpose never changes.
func PurposeSave(ctx context.Context, tx pgx.Tx, p Purpose) (saved Purpose, created bool, err error) {
	if !PurposeNameRE.MatchString(p.Name) {
		return p, false, fieldErr("name", "must be 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit")
	}
	switch {
	case p.Name == TrackingPurpose && p.Kind == PurposeMarketing:
		return p, false, fieldErr("name", "tracking is the name of the open and click tracking purpose; choose another name for a marketing purpose")
	case p.Name == TrackingPurpose:
		p.Kind = PurposeTracking
	case p.Kind == PurposeTracking:
		return p, false, fieldErr("kind", "the workspace's one tracking purpose is named "+TrackingPurpose)
	case p.Kind == "":
		p.Kind = PurposeMarketing
	case p.Kind != PurposeMarketing:
		return p, false, fieldErr("kind", "must be marketing or tracking")
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
	// The WHERE keeps a purpose's kind: a row of the other kind under this name (a marketing
	// purpose named "tracking" from before tracking existed) is left alone and reported.
	err = tx.QueryRow(ctx, `
		INSERT INTO purposes (workspace_id, name, kind, title, description, notice) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (workspace_id, name) DO UPDATE SET title = EXCLUDED.title, description = EXCLUDED.description,
			notice = EXCLUDED.notice,
			notice_version = purposes.notice_version + CASE WHEN purposes.notice = EXCLUDED.notice THEN 0 ELSE 1 END,
			updated_at = now()
		WHERE purposes.kind = EXCLUDED.kind
		RETURNING `+purposeColumns+`, (xmax = 0)`, p.WorkspaceID, p.Name, p.Kind, p.Title, p.Description, p.Notice).
		Scan(&saved.ID, &saved.WorkspaceID, &saved.Name, &saved.Kind, &saved.Title, &saved.Description, &saved.Notice,
			&saved.NoticeVersion, &saved.CreatedAt, &saved.UpdatedAt, &created)
	if errors.Is(err, pgx.ErrNoRows) {
		return saved, false, fieldErr("name", fmt.Sprintf("a purpose named %s exists and is not of kind %s", p.Name, p.Kind))
	}
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

// MarketingPurposes lists the workspace's marketing purposes (kind PurposeMarketing) by name: the
// topics of the preference centre and what campaigns may be sent for. The tracking purpose is
// not among them.
func MarketingPurposes(ctx context.Context, q db.Querier, workspaceID int64) ([]Purpose, error) {
	rows, err := q.Query(ctx, `SELECT `+purposeColumns+` FROM purposes WHERE workspace_id = $1 AND kind = 'marketing'
		ORDER BY name`, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("list marketing purposes: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Purpose, error) { return scanPurpose(r) })
	if err != nil {
		return nil, fmt.Errorf("list marketing purposes: %w", err)
	}
	return out, nil
}

// The tracking purpose's defaults, used when EnsureTrackingPurpose creates it; the workspace may
// reword both through the purposes API (a new notice version).
const (
	TrackingDefaultTitle  = "Open and click tracking"
	TrackingDefaultNotice = "Our marketing emails can contain a tiny invisible image (a web beacon). " +
		"When your email program loads it, we learn that you opened the email, when, and roughly from " +
		"which network and program. The links in the email can also lead through our server first, so " +
		"that we learn which link you clicked and when, before you are taken on to the page. We use this " +
		"only to measure and improve our emails. You can refuse it, or change your mind at any time in " +
		"your email preferences; refusing it does not change which emails you receive."
)

// ErrTrackingNameTaken is returned by EnsureTrackingPurpose when the workspace has a marketing
// purpose named TrackingPurpose (made before tracking existed), which keeps the tracking purpose
// from being created: rename or retire that purpose's use first.
var ErrTrackingNameTaken = errors.New("a marketing purpose is named " + TrackingPurpose)

// EnsureTrackingPurpose returns the workspace's tracking purpose, creating it with the default
// title and notice (version 1) on first use. It is one statement, so it may run on a pool; two
// concurrent first calls are settled by the unique indexes, and both return the same row.
func EnsureTrackingPurpose(ctx context.Context, q db.Querier, workspaceID int64) (Purpose, error) {
	_, err := q.Exec(ctx, `
		WITH ins AS (
			INSERT INTO purposes (workspace_id, name, kind, title, notice) VALUES ($1, $2, 'tracking', $3, $4)
			ON CONFLICT DO NOTHING
			RETURNING id, notice_version, notice)
		INSERT INTO purpose_notices (purpose_id, version, notice) SELECT id, notice_version, notice FROM ins`,
		workspaceID, TrackingPurpose, TrackingDefaultTitle, TrackingDefaultNotice)
	if err != nil {
		return Purpose{}, fmt.Errorf("ensure tracking purpose: %w", err)
	}
	p, err := PurposeGet(ctx, q, workspaceID, TrackingPurpose)
	if err != nil {
		return p, fmt.Errorf("ensure tracking purpose: %w", err)
	}
	if p.Kind != PurposeTracking {
		return p, fmt.Errorf("ensure tracking purpose: %w", ErrTrackingNameTaken)
	}
	return p, nil
}
