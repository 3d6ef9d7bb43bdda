package campaigns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/internal/contacts"
	"herald/internal/db"
	"herald/internal/httpx"
)

// List is a static list of a workspace's contacts, filled by the API and by imports.
type List struct {
	ID          int64     `json:"-"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
	// MemberCount is filled by ListGet only (counting is not free on large lists).
	MemberCount *int64 `json:"member_count,omitempty"`
}

// Limits of the list API.
const (
	maxDescription    = 1000
	maxMembersPerCall = 10_000
)

const listColumns = `id, name, description, created_at`

func scanList(row pgx.Row) (List, error) {
	var l List
	err := row.Scan(&l.ID, &l.Name, &l.Description, &l.CreatedAt)
	return l, err
}

// ListCreate creates a list. A bad name or description is a 422 problem, a taken name a 409.
func ListCreate(ctx context.Context, q db.Querier, workspaceID int64, name, description string) (List, error) {
	if !audienceNameRE.MatchString(name) {
		return List{}, httpx.Invalid("name", "must be 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit")
	}
	if !printableLine(description, maxDescription) {
		return List{}, httpx.Invalid("description", fmt.Sprintf("must be at most %d printable characters", maxDescription))
	}
	l, err := scanList(q.QueryRow(ctx, `INSERT INTO lists (workspace_id, name, description) VALUES ($1, $2, $3)
		RETURNING `+listColumns, workspaceID, name, description))
	if db.IsUniqueViolation(err) {
		return List{}, httpx.NewProblem(http.StatusConflict, "a list with this name exists")
	}
	if err != nil {
		return List{}, fmt.Errorf("create list: %w", err)
	}
	zero := int64(0)
	l.MemberCount = &zero
	return l, nil
}

// ListGet returns the workspace's list with its member count, or an error wrapping
// db.ErrNotFound.
func ListGet(ctx context.Context, q db.Querier, workspaceID int64, name string) (List, error) {
	var n int64
	var l List
	err := q.QueryRow(ctx, `SELECT `+listColumns+`, (SELECT count(*) FROM list_members m WHERE m.list_id = l.id)
		FROM lists l WHERE workspace_id = $1 AND name = $2`, workspaceID, name).
		Scan(&l.ID, &l.Name, &l.Description, &l.CreatedAt, &n)
	if errors.Is(err, pgx.ErrNoRows) {
		return List{}, fmt.Errorf("get list: %w", db.ErrNotFound)
	}
	if err != nil {
		return List{}, fmt.Errorf("get list: %w", err)
	}
	l.MemberCount = &n
	return l, nil
}

// ListDelete deletes the workspace's list and its memberships (not the contacts), or returns an
// error wrapping db.ErrNotFound.
func ListDelete(ctx context.Context, q db.Querier, workspaceID int64, name string) error {
	return audienceDelete(ctx, q, "lists", "exclude_lists", workspaceID, name)
}

// ListPage returns up to limit of the workspace's lists with names after after, by name.
func ListPage(ctx context.Context, q db.Querier, workspaceID int64, after string, limit int) ([]List, error) {
	rows, err := q.Query(ctx, `SELECT `+listColumns+` FROM lists WHERE workspace_id = $1 AND name > $2
		ORDER BY name LIMIT $3`, workspaceID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list lists: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (List, error) { return scanList(r) })
	if err != nil {
		return nil, fmt.Errorf("list lists: %w", err)
	}
	return out, nil
}

// listLock returns the id of the workspace's list, locking it against deletion until tx ends, or
// a 404 problem.
func listLock(ctx context.Context, tx pgx.Tx, workspaceID int64, name string) (int64, error) {
	var id int64
	err := tx.QueryRow(ctx, `SELECT id FROM lists WHERE workspace_id = $1 AND name = $2 FOR KEY SHARE`,
		workspaceID, name).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, httpx.NotFound("no list with this name")
	}
	if err != nil {
		return 0, fmt.Errorf("lock list: %w", err)
	}
	return id, nil
}

// MembersChange is the outcome of ListMembersChange.
type MembersChange struct {
	Added          int64    `json:"added"`
	AlreadyMembers int64    `json:"already_members"`
	Removed        int64    `json:"removed"`
	NotMembers     int64    `json:"not_members"`
	Unknown        []string `json:"unknown"` // external ids of no contact of the workspace
}

// ListMembersChange adds and removes the workspace's contacts, named by external id, to and from
// the list, in tx. At most 10,000 ids per call, none both added and removed; ids of no contact
// are reported, not fatal.
func ListMembersChange(ctx context.Context, tx pgx.Tx, workspaceID int64, list string, add, remove []string) (MembersChange, error) {
	out := MembersChange{Unknown: []string{}}
	if len(add)+len(remove) > maxMembersPerCall {
		return out, httpx.Invalid("add", fmt.Sprintf("at most %d external ids per call (add and remove together)", maxMembersPerCall))
	}
	adding := make(map[string]bool, len(add))
	for _, id := range add {
		adding[id] = true
	}
	for _, id := range remove {
		if adding[id] {
			return out, httpx.Invalid("remove", "an external id cannot be both added and removed")
		}
	}
	listID, err := listLock(ctx, tx, workspaceID, list)
	if err != nil {
		return out, err
	}
	all := append(append(make([]string, 0, len(add)+len(remove)), add...), remove...)
	rows, err := tx.Query(ctx, `SELECT DISTINCT x FROM unnest($2::text[]) x
		WHERE NOT EXISTS (SELECT 1 FROM contacts c WHERE c.workspace_id = $1 AND c.external_id = x) ORDER BY x`,
		workspaceID, all)
	if err != nil {
		return out, fmt.Errorf("change list members: %w", err)
	}
	if out.Unknown, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return out, fmt.Errorf("change list members: %w", err)
	}
	if len(add) > 0 {
		err = tx.QueryRow(ctx, `WITH known AS (
				SELECT DISTINCT c.id FROM contacts c WHERE c.workspace_id = $1 AND c.external_id = ANY($3::text[])
			), ins AS (
				INSERT INTO list_members (workspace_id, list_id, contact_id) SELECT $1, $2, id FROM known
				ON CONFLICT DO NOTHING RETURNING 1
			)
			SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM known) - (SELECT count(*) FROM ins)`,
			workspaceID, listID, add).Scan(&out.Added, &out.AlreadyMembers)
		if err != nil {
			return out, fmt.Errorf("add list members: %w", err)
		}
	}
	if len(remove) > 0 {
		err = tx.QueryRow(ctx, `WITH known AS (
				SELECT DISTINCT c.id FROM contacts c WHERE c.workspace_id = $1 AND c.external_id = ANY($3::text[])
			), del AS (
				DELETE FROM list_members m USING known WHERE m.list_id = $2 AND m.contact_id = known.id RETURNING 1
			)
			SELECT (SELECT count(*) FROM del), (SELECT count(*) FROM known) - (SELECT count(*) FROM del)`,
			workspaceID, listID, remove).Scan(&out.Removed, &out.NotMembers)
		if err != nil {
			return out, fmt.Errorf("remove list members: %w", err)
		}
	}
	return out, nil
}

// ListMember is one member of a list as the members API shows it.
type ListMember struct {
	ContactID  int64     `json:"-"`
	ExternalID string    `json:"external_id"`
	Email      string    `json:"email"`
	Name       string    `json:"name"`
	AddedAt    time.Time `json:"added_at"`
}

// ListMembersPage returns up to limit members of the workspace's list with contact id > after, in
// contact id order, or a 404 problem when there is no such list.
func ListMembersPage(ctx context.Context, q db.Querier, workspaceID int64, list string, after int64, limit int) ([]ListMember, error) {
	var listID int64
	err := q.QueryRow(ctx, `SELECT id FROM lists WHERE workspace_id = $1 AND name = $2`, workspaceID, list).Scan(&listID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, httpx.NotFound("no list with this name")
	}
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	rows, err := q.Query(ctx, `SELECT c.id, c.external_id, c.email, c.name, m.added_at
		FROM list_members m JOIN contacts c ON c.id = m.contact_id
		WHERE m.list_id = $1 AND m.contact_id > $2 ORDER BY m.contact_id LIMIT $3`, listID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ListMember, error) {
		var m ListMember
		err := r.Scan(&m.ContactID, &m.ExternalID, &m.Email, &m.Name, &m.AddedAt)
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	return out, nil
}

// ---- import ----

// ListImportReport is the outcome of a list import. Every received row is counted once: as
// added, already a member, unknown (no contact has its external id), invalid, or a duplicate of
// an earlier row with the same external id.
type ListImportReport struct {
	Received       int                 `json:"received"`
	Added          int                 `json:"added"`
	AlreadyMembers int                 `json:"already_members"`
	Unknown        int                 `json:"unknown"`
	Duplicates     int                 `json:"duplicates"`
	Invalid        int                 `json:"invalid"`
	Errors         []contacts.RowError `json:"errors"` // the first 1000 invalid or unknown rows
}

func (r *ListImportReport) addError(row int, field, detail string) {
	r.Invalid++
	if len(r.Errors) < contacts.MaxImportErrors {
		r.Errors = append(r.Errors, contacts.RowError{Row: row, Field: field, Detail: detail})
	}
}

// listImportRow is one data row: its number and external id, or why it is invalid.
type listImportRow struct {
	row        int
	externalID string
	field      string
	invalid    string
}

// listImportReader yields rows; io.EOF at the end, any other error is fatal to the import.
type listImportReader interface {
	next() (listImportRow, error)
}

// ListImport reads external ids in format from r (CSV with an external_id column, other columns
// ignored; or NDJSON objects with an external_id member, other members ignored) and adds the
// workspace's contacts they name to the list, in one transaction. Rows stream through COPY into a
// temporary table, so memory does not grow with the upload; invalid and unknown rows are reported;
// a read error (an upload over its size limit), a bad CSV header or more than 1,000,000 rows fail
// the import and add nothing. A missing list is a 404 problem.
func ListImport(ctx context.Context, b contacts.Beginner, workspaceID int64, list string, format contacts.Format, r io.Reader) (ListImportReport, error) {
	var rows listImportReader
	switch format {
	case contacts.FormatCSV:
		c, err := newListCSV(r)
		if err != nil {
			return ListImportReport{}, err
		}
		rows = c
	case contacts.FormatNDJSON:
		rows = &listNDJSON{lines: contacts.NewNDJSONLines(r)}
	default:
		return ListImportReport{}, fmt.Errorf("import list: unknown format %q", format)
	}
	report := ListImportReport{Errors: []contacts.RowError{}}
	tx, err := b.Begin(ctx)
	if err != nil {
		return report, fmt.Errorf("import list: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	listID, err := listLock(ctx, tx, workspaceID, list)
	if err != nil {
		return report, err
	}
	if _, err := tx.Exec(ctx, `SET LOCAL work_mem = '64MB'`); err != nil {
		return report, fmt.Errorf("import list: set work_mem: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE list_import (row_no int NOT NULL, external_id text NOT NULL) ON COMMIT DROP`); err != nil {
		return report, fmt.Errorf("import list: create staging table: %w", err)
	}
	src := &listImportSource{rows: rows, report: &report}
	staged, err := tx.CopyFrom(ctx, pgx.Identifier{"list_import"}, []string{"row_no", "external_id"}, src)
	if src.err != nil {
		return ListImportReport{}, src.err
	}
	if err != nil {
		return ListImportReport{}, fmt.Errorf("import list: copy: %w", err)
	}
	var distinct, known, added int
	err = tx.QueryRow(ctx, `WITH src AS (
			SELECT DISTINCT external_id FROM list_import
		), known AS (
			SELECT c.id FROM src JOIN contacts c ON c.workspace_id = $1 AND c.external_id = src.external_id
		), ins AS (
			INSERT INTO list_members (workspace_id, list_id, contact_id) SELECT $1, $2, id FROM known
			ON CONFLICT DO NOTHING RETURNING 1
		)
		SELECT (SELECT count(*) FROM src), (SELECT count(*) FROM known), (SELECT count(*) FROM ins)`,
		workspaceID, listID).Scan(&distinct, &known, &added)
	if err != nil {
		return ListImportReport{}, fmt.Errorf("import list: apply: %w", err)
	}
	report.Added, report.AlreadyMembers, report.Unknown = added, known-added, distinct-known
	report.Duplicates = int(staged) - distinct
	if report.Unknown > 0 && len(report.Errors) < contacts.MaxImportErrors {
		unknownRows, err := tx.Query(ctx, `SELECT min(i.row_no) FROM list_import i
			WHERE NOT EXISTS (SELECT 1 FROM contacts c WHERE c.workspace_id = $1 AND c.external_id = i.external_id)
			GROUP BY i.external_id ORDER BY 1 LIMIT $2`, workspaceID, contacts.MaxImportErrors-len(report.Errors))
		if err != nil {
			return ListImportReport{}, fmt.Errorf("import list: unknown rows: %w", err)
		}
		nums, err := pgx.CollectRows(unknownRows, pgx.RowTo[int32])
		if err != nil {
			return ListImportReport{}, fmt.Errorf("import list: unknown rows: %w", err)
		}
		for _, n := range nums {
			report.Errors = append(report.Errors, contacts.RowError{Row: int(n), Field: "external_id", Detail: "no contact has this external_id"})
		}
		slices.SortStableFunc(report.Errors, func(a, b contacts.RowError) int { return a.Row - b.Row })
	}
	if err := tx.Commit(ctx); err != nil {
		return ListImportReport{}, fmt.Errorf("import list: commit: %w", err)
	}
	return report, nil
}

// listImportSource feeds COPY from the parser, one row at a time, reporting invalid rows.
type listImportSource struct {
	rows   listImportReader
	report *ListImportReport
	values []any
	err    error // fatal: the import must not be applied
}

func (s *listImportSource) Next() bool {
	for {
		r, err := s.rows.next()
		if errors.Is(err, io.EOF) {
			return false
		}
		if err != nil {
			var p *httpx.Problem
			if errors.As(err, &p) {
				s.err = p
			} else {
				s.err = fmt.Errorf("import list: read upload: %w", err)
			}
			return false
		}
		s.report.Received++
		if r.invalid == "" && !contacts.ValidExternalID(r.externalID) {
			r.field, r.invalid = "external_id", "must be 1-255 printable characters without surrounding spaces"
		}
		if r.invalid != "" {
			s.report.addError(r.row, r.field, r.invalid)
			continue
		}
		s.values = append(s.values[:0], int32(r.row), r.externalID)
		return true
	}
}

func (s *listImportSource) Values() ([]any, error) { return s.values, nil }
func (s *listImportSource) Err() error             { return s.err }

// listCSV reads CSV rows, taking the external_id column named by the header; records may be
// shorter or longer than the header.
type listCSV struct {
	recs *contacts.CSVRecords
	col  int
}

func newListCSV(r io.Reader) (*listCSV, error) {
	recs, header, err := contacts.NewCSVRecords(r, "external_id")
	if err != nil {
		return nil, fmt.Errorf("import list: %w", err)
	}
	recs.AnyFieldCount()
	c := &listCSV{recs: recs, col: -1}
	for i, h := range header {
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff") // a byte order mark, as spreadsheets write
		}
		if strings.EqualFold(strings.TrimSpace(h), "external_id") {
			if c.col >= 0 {
				return nil, httpx.NewProblem(http.StatusUnprocessableEntity, "the CSV header row names external_id twice")
			}
			c.col = i
		}
	}
	if c.col < 0 {
		return nil, httpx.NewProblem(http.StatusUnprocessableEntity, "the CSV header row must name the column external_id")
	}
	return c, nil
}

func (c *listCSV) next() (listImportRow, error) {
	rec, err := c.recs.Next()
	switch {
	case err != nil:
		return listImportRow{}, err
	case rec.Malformed != "":
		return listImportRow{row: rec.Row, invalid: rec.Malformed}, nil
	case c.col >= len(rec.Fields):
		return listImportRow{row: rec.Row, field: "external_id", invalid: "is missing"}, nil
	}
	return listImportRow{row: rec.Row, externalID: rec.Fields[c.col]}, nil
}

// listNDJSON reads one JSON object per line, taking its external_id member.
type listNDJSON struct {
	lines *contacts.NDJSONLines
}

func (n *listNDJSON) next() (listImportRow, error) {
	l, err := n.lines.Next()
	if err != nil {
		return listImportRow{}, err
	}
	r := listImportRow{row: l.Row, invalid: l.Malformed}
	if r.invalid != "" {
		return r, nil
	}
	var obj struct {
		ExternalID *string `json:"external_id"`
	}
	var typ *json.UnmarshalTypeError
	if l.Line[0] != '{' {
		r.invalid = "line must hold one JSON object"
	} else if err := json.Unmarshal(l.Line, &obj); errors.As(err, &typ) && typ.Field == "external_id" {
		r.field, r.invalid = "external_id", "must be a string"
	} else if err != nil {
		r.invalid = "line must hold one JSON object"
	} else if obj.ExternalID == nil {
		r.field, r.invalid = "external_id", "is required"
	} else {
		r.externalID = *obj.ExternalID
	}
	return r, nil
}
