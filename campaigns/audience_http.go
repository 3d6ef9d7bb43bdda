package campaigns

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/internal/contacts"
	"herald/internal/db"
	"herald/internal/httpx"
	"herald/internal/workspace"
)

// AudienceHandler serves the lists, segments and audience API of the authenticated workspace.
type AudienceHandler struct {
	DB     *pgxpool.Pool
	Logger *slog.Logger
	// MaxBodyBytes limits a JSON body (default 4 MiB: 10,000 external ids fit).
	MaxBodyBytes int64
	// MaxImportBytes limits a list import upload (default 512 MiB).
	MaxImportBytes int64
}

const (
	defaultAudienceBody   = 4 << 20
	defaultAudienceImport = 512 << 20
	audiencePageDefault   = 100
	audiencePageMax       = 1000
)

// Routes mounts the endpoints on r, which must already run the workspace authenticator. Every
// route needs campaigns:write; list membership (members and import) also accepts contacts:write,
// so a CRM sync key can maintain lists without the right to send campaigns.
func (h *AudienceHandler) Routes(r chi.Router) {
	log := h.logger()
	r.Group(func(r chi.Router) {
		r.Use(workspace.Require(log, workspace.ScopeCampaignsWrite))
		r.Post("/lists", httpx.Handler(log, h.listCreate))
		r.Get("/lists", httpx.Handler(log, audienceIndex(h, "list", ListPage, func(l List) string { return l.Name })))
		r.Get("/lists/{name}", httpx.Handler(log, audienceGet(h, "list", ListGet)))
		r.Delete("/lists/{name}", httpx.Handler(log, audienceDeleteHandler(h, "list", ListDelete)))
		r.Post("/segments", httpx.Handler(log, h.segmentSave))
		r.Get("/segments", httpx.Handler(log, audienceIndex(h, "segment", SegmentPage, func(s Segment) string { return s.Name })))
		r.Post("/segments/preview", httpx.Handler(log, h.segmentPreview))
		r.Get("/segments/{name}", httpx.Handler(log, audienceGet(h, "segment", SegmentGet)))
		r.Delete("/segments/{name}", httpx.Handler(log, audienceDeleteHandler(h, "segment", SegmentDelete)))
		r.Post("/audiences/preview", httpx.Handler(log, h.audiencePreview))
	})
	r.Group(func(r chi.Router) {
		r.Use(workspace.Require(log, workspace.ScopeCampaignsWrite, workspace.ScopeContactsWrite))
		r.Post("/lists/{name}/members", httpx.Handler(log, h.membersChange))
		r.Get("/lists/{name}/members", httpx.Handler(log, h.membersIndex))
		r.Post("/lists/{name}/import", httpx.Handler(log, h.listImport))
	})
}

func (h *AudienceHandler) logger() *slog.Logger { return httpx.LoggerOrDiscard(h.Logger) }

func (h *AudienceHandler) maxBody() int64 { return httpx.LimitOr(h.MaxBodyBytes, defaultAudienceBody) }

// audiencePageParams reads ?limit= and ?cursor=; a cursor is base64url of kind ":" value, so one kind's
// cursor is refused by another kind's endpoint.
func audiencePageParams(r *http.Request, kind string) (cursor string, limit int, err error) {
	q := r.URL.Query()
	limit = audiencePageDefault
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > audiencePageMax {
			return "", 0, httpx.Invalid("limit", "must be a whole number from 1 to "+strconv.Itoa(audiencePageMax))
		}
		limit = n
	}
	if s := q.Get("cursor"); s != "" {
		b, err := base64.RawURLEncoding.DecodeString(s)
		v, ok := strings.CutPrefix(string(b), kind+":")
		if err != nil || !ok {
			return "", 0, httpx.Invalid("cursor", "is not a cursor this API returned")
		}
		cursor = v
	}
	return cursor, limit, nil
}

func audienceCursor(kind, v string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(kind + ":" + v))
}

// audienceNameParam returns the {name} path segment, or a 404 when it cannot be a name.
func audienceNameParam(r *http.Request, what string) (string, error) {
	name := chi.URLParam(r, "name")
	if !audienceNameRE.MatchString(name) {
		return "", httpx.NotFound("no " + what + " with this name")
	}
	return name, nil
}

// notFound turns db.ErrNotFound into a 404 problem.
func audienceNotFound(err error, what string) error {
	if errors.Is(err, db.ErrNotFound) {
		return httpx.NotFound("no " + what + " with this name")
	}
	if errors.Is(err, ErrAudienceInUse) {
		return httpx.NewProblem(http.StatusConflict, "this "+what+" cannot be deleted: "+ErrAudienceInUse.Error())
	}
	return err
}

// writeAudiencePage writes a page of items under kind+"s". The caller asked the store for limit+1
// items: one more means a next page, whose cursor names the last item shown.
func writeAudiencePage[T any](w http.ResponseWriter, kind string, items []T, limit int, key func(T) string) {
	out := map[string]any{}
	if len(items) > limit {
		items = items[:limit]
		out["next_cursor"] = audienceCursor(kind, key(items[limit-1]))
	}
	out[kind+"s"] = append([]T{}, items...) // [] rather than null when empty
	httpx.WriteJSON(w, http.StatusOK, out)
}

// Lists and segments are paged, read and deleted alike, by name; kind is "list" or "segment".

// audienceIndex serves GET /lists and /segments: a page of the workspace's lists or segments.
func audienceIndex[T any](h *AudienceHandler, kind string,
	page func(context.Context, db.Querier, int64, string, int) ([]T, error), name func(T) string,
) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		p := workspace.MustFromContext(r.Context())
		after, limit, err := audiencePageParams(r, kind)
		if err != nil {
			return err
		}
		items, err := page(r.Context(), h.DB, p.WorkspaceID, after, limit+1)
		if err != nil {
			return err
		}
		writeAudiencePage(w, kind, items, limit, name)
		return nil
	}
}

// audienceGet serves GET /lists/{name} and /segments/{name}.
func audienceGet[T any](h *AudienceHandler, kind string,
	get func(context.Context, db.Querier, int64, string) (T, error),
) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		p := workspace.MustFromContext(r.Context())
		name, err := audienceNameParam(r, kind)
		if err != nil {
			return err
		}
		v, err := get(r.Context(), h.DB, p.WorkspaceID, name)
		if err != nil {
			return audienceNotFound(err, kind)
		}
		httpx.WriteJSON(w, http.StatusOK, v)
		return nil
	}
}

// audienceDeleteHandler serves DELETE /lists/{name} and /segments/{name}.
func audienceDeleteHandler(h *AudienceHandler, kind string,
	del func(context.Context, db.Querier, int64, string) error,
) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		p := workspace.MustFromContext(r.Context())
		name, err := audienceNameParam(r, kind)
		if err != nil {
			return err
		}
		if err := del(r.Context(), h.DB, p.WorkspaceID, name); err != nil {
			return audienceNotFound(err, kind)
		}
		h.logger().InfoContext(r.Context(), kind+" deleted", "workspace_id", p.WorkspaceID, "key_id", p.KeyID)
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

type listCreateBody struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

func (h *AudienceHandler) listCreate(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	var body listCreateBody
	if err := httpx.DecodeJSON(w, r, h.maxBody(), &body); err != nil {
		return err
	}
	l, err := ListCreate(r.Context(), h.DB, p.WorkspaceID, body.Name, body.Description)
	if err != nil {
		return err
	}
	h.logger().InfoContext(r.Context(), "list created", "workspace_id", p.WorkspaceID, "list_id", l.ID)
	w.Header().Set("Location", "/v1/lists/"+l.Name)
	httpx.WriteJSON(w, http.StatusCreated, l)
	return nil
}

type listMembersBody struct {
	Add    []string `json:"add"`
	Remove []string `json:"remove"`
}

func (h *AudienceHandler) membersChange(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	name, err := audienceNameParam(r, "list")
	if err != nil {
		return err
	}
	var body listMembersBody
	if err := httpx.DecodeJSON(w, r, h.maxBody(), &body); err != nil {
		return err
	}
	var out MembersChange
	err = pgx.BeginFunc(r.Context(), h.DB, func(tx pgx.Tx) error {
		var err error
		out, err = ListMembersChange(r.Context(), tx, p.WorkspaceID, name, body.Add, body.Remove)
		return err
	})
	if err != nil {
		return err
	}
	h.logger().InfoContext(r.Context(), "list members changed", "workspace_id", p.WorkspaceID,
		"added", out.Added, "removed", out.Removed, "unknown", len(out.Unknown))
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (h *AudienceHandler) membersIndex(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	name, err := audienceNameParam(r, "list")
	if err != nil {
		return err
	}
	cursor, limit, err := audiencePageParams(r, "member")
	if err != nil {
		return err
	}
	var after int64
	if cursor != "" {
		if after, err = strconv.ParseInt(cursor, 10, 64); err != nil || after < 0 {
			return httpx.Invalid("cursor", "is not a cursor this API returned")
		}
	}
	members, err := ListMembersPage(r.Context(), h.DB, p.WorkspaceID, name, after, limit+1)
	if err != nil {
		return err
	}
	writeAudiencePage(w, "member", members, limit, func(m ListMember) string { return strconv.FormatInt(m.ContactID, 10) })
	return nil
}

// listImport serves POST /lists/{name}/import: a CSV (text/csv) or NDJSON upload of external ids.
func (h *AudienceHandler) listImport(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	name, err := audienceNameParam(r, "list")
	if err != nil {
		return err
	}
	format, err := contacts.UploadFormat(r)
	if err != nil {
		return err
	}
	start := time.Now()
	body := http.MaxBytesReader(w, r.Body, httpx.LimitOr(h.MaxImportBytes, defaultAudienceImport))
	report, err := ListImport(r.Context(), h.DB, p.WorkspaceID, name, format, body)
	if err != nil {
		return err
	}
	h.logger().InfoContext(r.Context(), "list imported", "workspace_id", p.WorkspaceID, "format", format,
		"received", report.Received, "added", report.Added, "already_members", report.AlreadyMembers,
		"unknown", report.Unknown, "duplicates", report.Duplicates, "invalid", report.Invalid,
		"duration", time.Since(start))
	httpx.WriteJSON(w, http.StatusOK, report)
	return nil
}

// filterProblem writes a refused filter as a 422 problem naming the field and, as an extension
// member, the 1-based character position of the fault.
func filterProblem(w http.ResponseWriter, field string, fe *FilterError) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusUnprocessableEntity)
	_ = json.NewEncoder(w).Encode(struct {
		Title    string `json:"title"`
		Status   int    `json:"status"`
		Detail   string `json:"detail"`
		Field    string `json:"field"`
		Position int    `json:"position"`
	}{"Invalid request", http.StatusUnprocessableEntity, field + ": " + fe.Error(), field, fe.Position})
}

type segmentSaveBody struct {
	Name   string `json:"name"`
	Filter string `json:"filter"`
}

func (h *AudienceHandler) segmentSave(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	var body segmentSaveBody
	if err := httpx.DecodeJSON(w, r, h.maxBody(), &body); err != nil {
		return err
	}
	s, created, err := SegmentSave(r.Context(), h.DB, p.WorkspaceID, body.Name, body.Filter)
	var fe *FilterError
	if errors.As(err, &fe) {
		filterProblem(w, "filter", fe)
		return nil
	}
	if err != nil {
		return err
	}
	h.logger().InfoContext(r.Context(), "segment saved", "workspace_id", p.WorkspaceID, "segment_id", s.ID, "created", created)
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/segments/"+s.Name)
	}
	httpx.WriteJSON(w, status, s)
	return nil
}

func (h *AudienceHandler) segmentPreview(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	var body struct {
		Filter string `json:"filter"`
	}
	if err := httpx.DecodeJSON(w, r, h.maxBody(), &body); err != nil {
		return err
	}
	count, sample, err := SegmentPreview(r.Context(), h.DB, p.WorkspaceID, body.Filter)
	var fe *FilterError
	if errors.As(err, &fe) {
		filterProblem(w, "filter", fe)
		return nil
	}
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"count": count, "sample": append([]string{}, sample...)})
	return nil
}

func (h *AudienceHandler) audiencePreview(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	var a Audience
	if err := httpx.DecodeJSON(w, r, h.maxBody(), &a); err != nil {
		return err
	}
	n, err := AudienceCount(r.Context(), h.DB, p.WorkspaceID, a)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"count": n})
	return nil
}
