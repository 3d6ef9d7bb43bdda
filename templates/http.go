package templates

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/internal/db"
	"herald/internal/httpx"
	"herald/internal/workspace"
)

// defaultMaxBodyBytes fits three parts of MaxPartBytes even when JSON escapes much of the HTML.
const defaultMaxBodyBytes = 4 << 20

// Handler serves the template API under an authenticated /v1 router.
type Handler struct {
	DB     *pgxpool.Pool
	Logger *slog.Logger
	// MaxBodyBytes bounds request bodies; 0 means 4 MiB.
	MaxBodyBytes int64
}

// Routes mounts the template routes on r, which must already run workspace.Auth. Every route
// needs a key with messages:send or campaigns:write (templates serve both streams).
//
//	POST /templates                                 store a new version
//	GET  /templates/{name}                          the latest version
//	GET  /templates/{name}/versions/{version}       one version
//	POST /templates/{name}/preview                  render {version?, data}
func (h *Handler) Routes(r chi.Router) {
	r.Group(func(r chi.Router) {
		r.Use(workspace.Require(h.logger(), workspace.ScopeMessagesSend, workspace.ScopeCampaignsWrite))
		r.Post("/templates", httpx.Handler(h.logger(), h.create))
		r.Get("/templates/{name}", httpx.Handler(h.logger(), h.get))
		r.Get("/templates/{name}/versions/{version}", httpx.Handler(h.logger(), h.get))
		r.Post("/templates/{name}/preview", httpx.Handler(h.logger(), h.preview))
	})
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger == nil {
		return slog.Default()
	}
	return h.Logger
}

func (h *Handler) maxBody() int64 {
	if h.MaxBodyBytes <= 0 {
		return defaultMaxBodyBytes
	}
	return h.MaxBodyBytes
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) error {
	var in Input
	if err := httpx.DecodeJSON(w, r, h.maxBody(), &in); err != nil {
		return err
	}
	p := workspace.MustFromContext(r.Context())
	t, err := Create(r.Context(), h.DB, p.WorkspaceID, in)
	if err != nil {
		return problem(err)
	}
	w.Header().Set("Location", r.URL.Path+"/"+url.PathEscape(t.Name)+"/versions/"+strconv.Itoa(t.Version))
	httpx.WriteJSON(w, http.StatusCreated, t)
	return nil
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) error {
	name := chi.URLParam(r, "name")
	version := 0
	if v := chi.URLParam(r, "version"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return httpx.NotFound("no such template version")
		}
		version = n
	}
	t, err := Get(r.Context(), h.DB, workspace.MustFromContext(r.Context()).WorkspaceID, name, version)
	if err != nil {
		return problem(err)
	}
	httpx.WriteJSON(w, http.StatusOK, t)
	return nil
}

type previewRequest struct {
	// Version to render; 0 or absent means the latest.
	Version int             `json:"version"`
	Data    json.RawMessage `json:"data"`
}

func (h *Handler) preview(w http.ResponseWriter, r *http.Request) error {
	var req previewRequest
	if err := httpx.DecodeJSON(w, r, h.maxBody(), &req); err != nil {
		return err
	}
	if req.Version < 0 {
		return httpx.Invalid("version", "must be a positive version number, or 0 for the latest")
	}
	data, err := DecodeData(req.Data)
	if err != nil {
		return httpx.Invalid("data", err.Error())
	}
	t, err := Get(r.Context(), h.DB, workspace.MustFromContext(r.Context()).WorkspaceID, chi.URLParam(r, "name"), req.Version)
	if err != nil {
		return problem(err)
	}
	out, err := Render(t, data)
	var pe *PartError
	if errors.As(err, &pe) {
		// The stored version parsed, so this is the data: a missing key, a bad date, a line break
		// in the subject. The detail names the template part.
		return httpx.Invalid("data", pe.Error())
	}
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

// problem maps package errors to client-safe problems; anything else stays an internal error.
func problem(err error) error {
	var pe *PartError
	switch {
	case errors.As(err, &pe):
		return httpx.Invalid(pe.Part, pe.Err.Error())
	case errors.Is(err, db.ErrNotFound):
		return httpx.NotFound("no such template")
	case errors.Is(err, ErrBusy):
		return httpx.NewProblem(http.StatusConflict, ErrBusy.Error())
	}
	return err
}
