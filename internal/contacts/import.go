package contacts

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/internal/httpx"
	"herald/internal/workspace"
)

// Format is the encoding of an import upload.
type Format string

// Import formats.
const (
	FormatCSV    Format = "csv"
	FormatNDJSON Format = "ndjson"
)

// ImportReport is the outcome of one import. Every received row is counted once: as created,
// updated, invalid, or as a duplicate superseded by a later row with the same external_id.
type ImportReport struct {
	Received   int        `json:"received"`
	Created    int        `json:"created"`
	Updated    int        `json:"updated"`
	Duplicates int        `json:"duplicates"`
	Invalid    int        `json:"invalid"`
	Errors     []RowError `json:"errors"` // the first 1000 invalid rows
}

// RowError names an invalid row: its 1-based line (NDJSON) or record (CSV, the header being
// record 1, as a spreadsheet numbers it), the field at fault when there is one, and the rule broken.
type RowError struct {
	Row    int    `json:"row"`
	Field  string `json:"field,omitempty"`
	Detail string `json:"detail"`
}

func (r *ImportReport) addError(row int, fe *fieldError) {
	r.Invalid++
	if len(r.Errors) < MaxImportErrors {
		r.Errors = append(r.Errors, RowError{Row: row, Field: fe.Field, Detail: fe.Detail})
	}
}

// Beginner starts a transaction; *pgxpool.Pool, *pgx.Conn and pgx.Tx (a savepoint) satisfy it.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// contactImportStage creates the per-import staging table. external_id uses the "C" collation so
// the de-duplicating sort compares bytes.
const contactImportStage = `
CREATE TEMP TABLE contacts_import (
	row_no      int NOT NULL,
	external_id text COLLATE "C" NOT NULL,
	email       text NOT NULL,
	name        text NOT NULL,
	locale      text NOT NULL,
	timezone    text NOT NULL,
	attributes  jsonb NOT NULL
) ON COMMIT DROP`

var contactImportColumns = []string{"row_no", "external_id", "email", "name", "locale", "timezone", "attributes"}

// contactImportApply upserts the staged rows into the workspace, the last row of each external_id
// winning, and counts inserted and updated contacts.
const contactImportApply = `
WITH src AS (
	SELECT DISTINCT ON (external_id) external_id, email, name, locale, timezone, attributes
	FROM contacts_import
	ORDER BY external_id, row_no DESC
), up AS (
	INSERT INTO contacts (workspace_id, external_id, email, name, locale, timezone, attributes)
	SELECT $1, external_id, email, name, locale, timezone, attributes FROM src
	ON CONFLICT (workspace_id, external_id) DO UPDATE SET
		email = EXCLUDED.email, name = EXCLUDED.name, locale = EXCLUDED.locale,
		timezone = EXCLUDED.timezone, attributes = EXCLUDED.attributes, updated_at = now()
	RETURNING (xmax = 0) AS created
)
SELECT count(*) FILTER (WHERE created), count(*) FILTER (WHERE NOT created) FROM up`

// Import reads contacts in format from r and upserts the valid ones into the workspace in one
// transaction. Rows are parsed and validated one at a time while COPY streams them into a
// temporary staging table, so memory use does not grow with the upload; one INSERT … SELECT then
// applies them. An invalid row is skipped and reported; a read error (such as an upload over its
// size limit), a malformed CSV header or more than 1,000,000 rows fail the whole import and
// apply nothing.
func Import(ctx context.Context, b Beginner, workspaceID int64, format Format, r io.Reader) (ImportReport, error) {
	return ImportAs(ctx, b, workspaceID, format, r, "")
}

// ActionImport is the audit_log action of an import made through the API.
const ActionImport = "contacts.import"

// ImportAs is Import on behalf of actor: unless actor is empty, the import's transaction also
// writes one audit entry (action contacts.import) with the counts of its report. An import does
// not record a rectification per contact, as a PUT does: it is the CRM's bulk sync, up to a
// million rows, and a per-row comparison and audit row would cost more than the import itself.
func ImportAs(ctx context.Context, b Beginner, workspaceID int64, format Format, r io.Reader, actor string) (ImportReport, error) {
	rows, err := newRowReader(format, r)
	if err != nil {
		return ImportReport{}, err
	}
	report := ImportReport{Errors: []RowError{}}
	tx, err := b.Begin(ctx)
	if err != nil {
		return ImportReport{}, fmt.Errorf("import contacts: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit

	// The de-duplicating sort of a large import would spill to disk at the default work_mem.
	if _, err := tx.Exec(ctx, `SET LOCAL work_mem = '64MB'`); err != nil {
		return ImportReport{}, fmt.Errorf("import contacts: set work_mem: %w", err)
	}
	if _, err := tx.Exec(ctx, contactImportStage); err != nil {
		return ImportReport{}, fmt.Errorf("import contacts: create staging table: %w", err)
	}
	src := &rowSource{rows: rows, report: &report, zones: zoneCache{}}
	staged, err := tx.CopyFrom(ctx, pgx.Identifier{"contacts_import"}, contactImportColumns, src)
	if src.err != nil {
		return ImportReport{}, src.err
	}
	if err != nil {
		return ImportReport{}, fmt.Errorf("import contacts: copy: %w", err)
	}
	if err := tx.QueryRow(ctx, contactImportApply, workspaceID).Scan(&report.Created, &report.Updated); err != nil {
		return ImportReport{}, fmt.Errorf("import contacts: apply: %w", err)
	}
	if _, err := tx.Exec(ctx, `DROP TABLE contacts_import`); err != nil {
		return ImportReport{}, fmt.Errorf("import contacts: drop staging table: %w", err)
	}
	report.Duplicates = int(staged) - report.Created - report.Updated
	if actor != "" {
		detail, err := json.Marshal(map[string]int{"received": report.Received, "created": report.Created,
			"updated": report.Updated, "duplicates": report.Duplicates, "invalid": report.Invalid})
		if err != nil {
			return ImportReport{}, fmt.Errorf("import contacts: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO audit_log (workspace_id, actor, action, target, detail)
			VALUES ($1, $2, '`+ActionImport+`', $3, $4)`, workspaceID, actor, "workspace:"+strconv.FormatInt(workspaceID, 10), detail); err != nil {
			return ImportReport{}, fmt.Errorf("import contacts: audit: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return ImportReport{}, fmt.Errorf("import contacts: commit: %w", err)
	}
	return report, nil
}

// importContacts serves POST /contacts/import.
func (h *Handler) importContacts(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	format, err := UploadFormat(r)
	if err != nil {
		return err
	}
	start := time.Now()
	body := http.MaxBytesReader(w, r.Body, h.maxImport())
	report, err := ImportAs(r.Context(), h.DB, p.WorkspaceID, format, body, p.Actor())
	if err != nil {
		return err
	}
	h.logger().InfoContext(r.Context(), "contacts imported", "workspace_id", p.WorkspaceID,
		"format", format, "received", report.Received, "created", report.Created,
		"updated", report.Updated, "duplicates", report.Duplicates, "invalid", report.Invalid,
		"duration", time.Since(start))
	httpx.WriteJSON(w, http.StatusOK, report)
	return nil
}
