package campaigns

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/internal/db"
	"herald/internal/httpx"
)

// Segment is a named filter over a workspace's contacts (the language is described on
// CompileSegment). Its members are computed when it is read, never stored.
type Segment struct {
	ID        int64     `json:"-"`
	Name      string    `json:"name"`
	Filter    string    `json:"filter"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

const segmentColumns = `id, name, filter, created_at, updated_at`

func scanSegment(row pgx.Row) (Segment, error) {
	var s Segment
	err := row.Scan(&s.ID, &s.Name, &s.Filter, &s.CreatedAt, &s.UpdatedAt)
	return s, err
}

// SegmentSave creates the workspace's segment or replaces its filter. The filter is compiled
// first: a refused one is a *FilterError and nothing is stored; a bad name is a 422 problem.
func SegmentSave(ctx context.Context, q db.Querier, workspaceID int64, name, filter string) (s Segment, created bool, err error) {
	if !audienceNameRE.MatchString(name) {
		return s, false, httpx.Invalid("name", "must be 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit")
	}
	if _, err := parseFilter(filter); err != nil {
		return s, false, err
	}
	err = q.QueryRow(ctx, `INSERT INTO segments (workspace_id, name, filter) VALUES ($1, $2, $3)
		ON CONFLICT (workspace_id, name) DO UPDATE SET filter = EXCLUDED.filter, updated_at = now()
		RETURNING `+segmentColumns+`, (xmax = 0)`, workspaceID, name, filter).
		Scan(&s.ID, &s.Name, &s.Filter, &s.CreatedAt, &s.UpdatedAt, &created)
	if err != nil {
		return s, false, fmt.Errorf("save segment: %w", err)
	}
	return s, created, nil
}

// SegmentGet returns the workspace's segment, or an error wrapping db.ErrNotFound.
func SegmentGet(ctx context.Context, q db.Querier, workspaceID int64, name string) (Segment, error) {
	s, err := scanSegment(q.QueryRow(ctx, `SELECT `+segmentColumns+` FROM segments WHERE workspace_id = $1 AND name = $2`,
		workspaceID, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return s, fmt.Errorf("get segment: %w", db.ErrNotFound)
	}
	if err != nil {
		return s, fmt.Errorf("get segment: %w", err)
	}
	return s, nil
}

// SegmentDelete deletes the workspace's segment, or returns an error wrapping db.ErrNotFound.
func SegmentDelete(ctx context.Context, q db.Querier, workspaceID int64, name string) error {
	return audienceDelete(ctx, q, "segments", "exclude_segments", workspaceID, name)
}

// SegmentPage returns up to limit of the workspace's segments with names after after, by name.
func SegmentPage(ctx context.Context, q db.Querier, workspaceID int64, after string, limit int) ([]Segment, error) {
	rows, err := q.Query(ctx, `SELECT `+segmentColumns+` FROM segments WHERE workspace_id = $1 AND name > $2
		ORDER BY name LIMIT $3`, workspaceID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list segments: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Segment, error) { return scanSegment(r) })
	if err != nil {
		return nil, fmt.Errorf("list segments: %w", err)
	}
	return out, nil
}

// segmentSampleSize is how many external ids a preview shows.
const segmentSampleSize = 10

// SegmentPreview evaluates filter over the workspace's contacts with an email now and returns how
// many match and the external ids of the first ten (by contact id). A refused filter is a
// *FilterError.
func SegmentPreview(ctx context.Context, q db.Querier, workspaceID int64, filter string) (count int64, sample []string, err error) {
	cond, args, err := CompileSegment(filter, "c", []any{workspaceID})
	if err != nil {
		return 0, nil, err
	}
	where := ` FROM contacts c WHERE c.workspace_id = $1 AND c.email <> '' AND ` + cond
	if err := q.QueryRow(ctx, `SELECT count(*)`+where, args...).Scan(&count); err != nil {
		return 0, nil, fmt.Errorf("preview segment: %w", err)
	}
	rows, err := q.Query(ctx, `SELECT c.external_id`+where+fmt.Sprintf(` ORDER BY c.id LIMIT %d`, segmentSampleSize), args...)
	if err != nil {
		return 0, nil, fmt.Errorf("preview segment: %w", err)
	}
	if sample, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return 0, nil, fmt.Errorf("preview segment: %w", err)
	}
	return count, sample, nil
}
