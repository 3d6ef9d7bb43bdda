package consent

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/internal/httpx"
	"herald/internal/workspace"
)

// AuditEntry is one audit_log row as GET /v1/audit shows it.
type AuditEntry struct {
	ID     int64           `json:"id"`
	Actor  string          `json:"actor"`
	Action string          `json:"action"`
	Target string          `json:"target"`
	Detail json.RawMessage `json:"detail"`
	At     time.Time       `json:"at"`
}

// An audit cursor is the last entry's id (8 bytes, base64url): entries are read newest first.
func encodeAuditCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString(binary.BigEndian.AppendUint64(nil, uint64(id)))
}

func decodeAuditCursor(s string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 8 || int64(binary.BigEndian.Uint64(b)) < 1 {
		return 0, httpx.Invalid("cursor", "is not a cursor this API returned")
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

// queryTime reads an optional RFC 3339 query parameter.
func queryTime(r *http.Request, name string) (*time.Time, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil, httpx.Invalid(name, "must be an RFC 3339 time")
	}
	return &t, nil
}

// auditList pages through the workspace's audit log, newest first (by id, on the index
// (workspace_id, id DESC)), optionally only one action and one actor, and entries at or after
// since and before until.
func (h *Handler) auditList(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p := workspace.MustFromContext(ctx)
	q := r.URL.Query()
	action, actorName := q.Get("action"), q.Get("actor")
	if !printable(action, 100) {
		return httpx.Invalid("action", "must be at most 100 printable characters")
	}
	if !printable(actorName, 200) {
		return httpx.Invalid("actor", "must be at most 200 printable characters")
	}
	since, err := queryTime(r, "since")
	if err != nil {
		return err
	}
	until, err := queryTime(r, "until")
	if err != nil {
		return err
	}
	if since != nil && until != nil && !since.Before(*until) {
		return httpx.Invalid("until", "must be after since")
	}
	limit, err := pageLimit(r)
	if err != nil {
		return err
	}
	var before *int64
	if s := q.Get("cursor"); s != "" {
		id, err := decodeAuditCursor(s)
		if err != nil {
			return err
		}
		before = &id
	}
	rows, err := h.DB.Query(ctx, `SELECT id, actor, action, target, detail, at FROM audit_log
		WHERE workspace_id = $1 AND ($2::bigint IS NULL OR id < $2) AND ($3 = '' OR action = $3)
			AND ($4 = '' OR actor = $4) AND ($5::timestamptz IS NULL OR at >= $5)
			AND ($6::timestamptz IS NULL OR at < $6)
		ORDER BY id DESC LIMIT $7`, p.WorkspaceID, before, action, actorName, since, until, limit+1)
	if err != nil {
		return err
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (AuditEntry, error) {
		var e AuditEntry
		err := row.Scan(&e.ID, &e.Actor, &e.Action, &e.Target, &e.Detail, &e.At)
		return e, err
	})
	if err != nil {
		return err
	}
	out := map[string]any{}
	if len(list) > limit {
		list = list[:limit]
		out["next_cursor"] = encodeAuditCursor(list[limit-1].ID)
	}
	out["entries"] = orEmptySlice(list)
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}
