package contacts

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/internal/db"
	"herald/internal/httpx"
	"herald/internal/workspace"
)

// Handler serves the contacts API of the authenticated workspace.
type Handler struct {
	DB     *pgxpool.Pool
	Logger *slog.Logger
	// MaxBodyBytes limits a PUT body (default 1 MiB).
	MaxBodyBytes int64
	// MaxImportBytes limits an import upload (default 512 MiB).
	MaxImportBytes int64
}

// Routes mounts the contacts endpoints on r, which must already run workspace.Auth. Every route
// needs the contacts:write scope.
func (h *Handler) Routes(r chi.Router) {
	log := h.logger()
	r.Group(func(r chi.Router) {
		r.Use(workspace.Require(log, workspace.ScopeContactsWrite))
		r.Post("/contacts/import", httpx.Handler(log, h.importContacts))
		r.Put("/contacts/{external_id}", httpx.Handler(log, h.put))
		r.Get("/contacts/{external_id}", httpx.Handler(log, h.get))
	})
}

func (h *Handler) logger() *slog.Logger { return httpx.LoggerOrDiscard(h.Logger) }

func (h *Handler) maxBody() int64 { return httpx.LimitOr(h.MaxBodyBytes, defaultBodyBytes) }

func (h *Handler) maxImport() int64 { return httpx.LimitOr(h.MaxImportBytes, defaultImportSize) }

// putBody is the JSON a PUT carries; the external id comes from the path. PUT replaces the whole
// contact: an omitted field becomes empty.
type putBody struct {
	Email      string          `json:"email"`
	Name       string          `json:"name"`
	Locale     string          `json:"locale"`
	Timezone   string          `json:"timezone"`
	Attributes json.RawMessage `json:"attributes"`
}

func (h *Handler) put(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	id, err := externalIDParam(r)
	if err != nil {
		return err
	}
	var body putBody
	if err := httpx.DecodeJSON(w, r, h.maxBody(), &body); err != nil {
		return err
	}
	attrs, fe := decodeAttributes(body.Attributes)
	if fe != nil {
		return httpx.Invalid(fe.Field, fe.Detail)
	}
	var c Contact
	var created bool
	var changed []string
	err = pgx.BeginFunc(r.Context(), h.DB, func(tx pgx.Tx) error {
		var err error
		c, created, changed, err = UpsertAs(r.Context(), tx, p.WorkspaceID, Input{
			ExternalID: id, Email: body.Email, Name: body.Name, Locale: body.Locale,
			Timezone: body.Timezone, Attributes: attrs,
		}, p.Actor())
		return err
	})
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", r.URL.EscapedPath())
	}
	h.logger().InfoContext(r.Context(), "contact upserted", "workspace_id", p.WorkspaceID,
		"contact_id", c.ID, "created", created, "changed", changed)
	httpx.WriteJSON(w, status, c)
	return nil
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	id, err := externalIDParam(r)
	if err != nil {
		return err
	}
	c, err := Get(r.Context(), h.DB, p.WorkspaceID, id)
	if errors.Is(err, db.ErrNotFound) {
		return httpx.NotFound("no contact with this external_id")
	}
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, c)
	return nil
}

// ExternalIDParam returns the request's decoded and checked {external_id} path segment, or a 422
// problem; other packages' routes under /contacts/{external_id} use it so ids are read one way.
func ExternalIDParam(r *http.Request) (string, error) { return externalIDParam(r) }

// externalIDParam returns the decoded {external_id} path segment. chi matches on the escaped path
// when the URL has one (so an id may hold an encoded "/"), and on the decoded path otherwise.
func externalIDParam(r *http.Request) (string, error) {
	id := chi.URLParam(r, "external_id")
	if r.URL.RawPath != "" {
		dec, err := url.PathUnescape(id)
		if err != nil {
			return "", httpx.Invalid("external_id", "is not a valid URL path segment")
		}
		id = dec
	}
	if fe := checkExternalID(id); fe != nil {
		return "", httpx.Invalid(fe.Field, fe.Detail)
	}
	return id, nil
}
