package campaigns

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"herald/consent"
	"herald/internal/db"
	"herald/internal/httpx"
	"herald/internal/workspace"
)

// Handler serves the campaigns API: sender identities (/senders) and campaigns (/campaigns),
// all with the campaigns:write scope.
type Handler struct {
	DB *pgxpool.Pool
	// River inserts the fan-out, requeue and sweep jobs in the transaction of a state change.
	River *river.Client[pgx.Tx]
	// Consent is the consent service (purposes are read from its ledger's tables).
	Consent *consent.Service
	Logger  *slog.Logger
	// MaxBodyBytes limits a JSON request body (default 64 KiB).
	MaxBodyBytes int64
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Page sizes of GET /v1/campaigns.
const (
	campaignPageDefault = 50
	campaignPageMax     = 200
)

// Routes mounts the API on r, which must already run the workspace authenticator.
func (h *Handler) Routes(r chi.Router) {
	log := h.logger()
	r.Group(func(r chi.Router) {
		r.Use(workspace.Require(log, workspace.ScopeCampaignsWrite))
		r.Post("/senders", h.handle(h.senderPost))
		r.Get("/senders", h.handle(h.senderList))
		r.Get("/senders/{name}", h.handle(h.senderGet))
		r.Put("/senders/{name}", h.handle(h.senderPut))
		r.Post("/campaigns", h.handle(h.campaignPost))
		r.Get("/campaigns", h.handle(h.campaignList))
		r.Get("/campaigns/{id}", h.handle(h.campaignGet))
		r.Patch("/campaigns/{id}", h.handle(h.campaignPatch))
		r.Get("/campaigns/{id}/stats", h.handle(h.campaignStats))
		for _, action := range []string{"schedule", "pause", "resume", "cancel"} {
			r.Post("/campaigns/{id}/"+action, h.handle(h.transition(action)))
		}
	})
}

func (h *Handler) logger() *slog.Logger { return httpx.LoggerOrDiscard(h.Logger) }

func (h *Handler) maxBody() int64 { return httpx.LimitOr(h.MaxBodyBytes, 64<<10) }

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now().UTC()
	}
	return time.Now().UTC()
}

// handle adapts a handler, answering a *StateError with 409 and the campaign's current state.
func (h *Handler) handle(f func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return httpx.Handler(h.logger(), func(w http.ResponseWriter, r *http.Request) error {
		err := f(w, r)
		var se *StateError
		if errors.As(err, &se) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusConflict)
			_ = json.NewEncoder(w).Encode(map[string]any{"title": http.StatusText(http.StatusConflict),
				"status": http.StatusConflict, "detail": se.Error(), "campaign_status": se.Status})
			return nil
		}
		return err
	})
}

// campaignID reads {id}; anything but a positive integer is a campaign that does not exist.
func campaignID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, errNoCampaign()
	}
	return id, nil
}

func errNoCampaign() *httpx.Problem { return httpx.NotFound("no campaign with this id") }

// notFoundAs maps db.ErrNotFound to the 404 problem p.
func notFoundAs(err error, p *httpx.Problem) error {
	if errors.Is(err, db.ErrNotFound) {
		return p
	}
	return err
}

func (h *Handler) senderPost(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	var in SenderInput
	if err := httpx.DecodeJSON(w, r, h.maxBody(), &in); err != nil {
		return err
	}
	s, err := SenderCreate(r.Context(), h.DB, p.WorkspaceID, in)
	if errors.Is(err, ErrSenderExists) {
		return httpx.NewProblem(http.StatusConflict, "a sender with this name exists; PUT /v1/senders/{name} changes it")
	}
	if err != nil {
		return err
	}
	h.logger().InfoContext(r.Context(), "sender created", "workspace_id", p.WorkspaceID, "sender_id", s.ID)
	w.Header().Set("Location", "/v1/senders/"+s.Name)
	httpx.WriteJSON(w, http.StatusCreated, s)
	return nil
}

func (h *Handler) senderPut(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	var in SenderInput
	if err := httpx.DecodeJSON(w, r, h.maxBody(), &in); err != nil {
		return err
	}
	name := chi.URLParam(r, "name")
	if in.Name != "" && in.Name != name {
		return httpx.Invalid("name", "must be absent or the name in the path")
	}
	in.Name = name
	s, created, err := SenderPut(r.Context(), h.DB, p.WorkspaceID, in)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	h.logger().InfoContext(r.Context(), "sender saved", "workspace_id", p.WorkspaceID, "sender_id", s.ID, "created", created)
	httpx.WriteJSON(w, status, s)
	return nil
}

func (h *Handler) senderGet(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	s, err := SenderGet(r.Context(), h.DB, p.WorkspaceID, chi.URLParam(r, "name"))
	if err != nil {
		return notFoundAs(err, httpx.NotFound("no sender with this name"))
	}
	httpx.WriteJSON(w, http.StatusOK, s)
	return nil
}

func (h *Handler) senderList(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	list, err := Senders(r.Context(), h.DB, p.WorkspaceID)
	if err != nil {
		return err
	}
	if list == nil {
		list = []Sender{}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"senders": list})
	return nil
}

func (h *Handler) campaignPost(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	var in CampaignInput
	if err := httpx.DecodeJSON(w, r, h.maxBody(), &in); err != nil {
		return err
	}
	c, err := CampaignCreate(r.Context(), h.DB, p.WorkspaceID, in, h.now())
	if err != nil {
		return err
	}
	h.logger().InfoContext(r.Context(), "campaign created", "workspace_id", p.WorkspaceID, "campaign_id", c.ID)
	w.Header().Set("Location", "/v1/campaigns/"+strconv.FormatInt(c.ID, 10))
	httpx.WriteJSON(w, http.StatusCreated, c)
	return nil
}

func (h *Handler) campaignGet(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	id, err := campaignID(r)
	if err != nil {
		return err
	}
	c, err := CampaignGet(r.Context(), h.DB, p.WorkspaceID, id)
	if err != nil {
		return notFoundAs(err, errNoCampaign())
	}
	httpx.WriteJSON(w, http.StatusOK, c)
	return nil
}

// campaignList pages through the workspace's campaigns, newest first; the cursor is the last
// campaign's id.
func (h *Handler) campaignList(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	q := r.URL.Query()
	limit := campaignPageDefault
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > campaignPageMax {
			return httpx.Invalid("limit", "must be a whole number from 1 to "+strconv.Itoa(campaignPageMax))
		}
		limit = n
	}
	var before int64
	if s := q.Get("cursor"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return httpx.Invalid("cursor", "is not a cursor this API returned")
		}
		before = n
	}
	list, err := CampaignList(r.Context(), h.DB, p.WorkspaceID, before, limit+1)
	if err != nil {
		return err
	}
	out := map[string]any{}
	if len(list) > limit {
		list = list[:limit]
		out["next_cursor"] = strconv.FormatInt(list[limit-1].ID, 10)
	}
	if list == nil {
		list = []Campaign{}
	}
	out["campaigns"] = list
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (h *Handler) campaignPatch(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	id, err := campaignID(r)
	if err != nil {
		return err
	}
	var in CampaignInput
	if err := httpx.DecodeJSON(w, r, h.maxBody(), &in); err != nil {
		return err
	}
	var c Campaign
	err = pgx.BeginFunc(r.Context(), h.DB, func(tx pgx.Tx) error {
		c, err = CampaignUpdate(r.Context(), tx, p.WorkspaceID, id, in, h.now())
		return err
	})
	if err != nil {
		return notFoundAs(err, errNoCampaign())
	}
	httpx.WriteJSON(w, http.StatusOK, c)
	return nil
}

// transition serves POST /campaigns/{id}/{action}: the state change and its jobs commit together.
func (h *Handler) transition(action string) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		p := workspace.MustFromContext(r.Context())
		id, err := campaignID(r)
		if err != nil {
			return err
		}
		var c Campaign
		err = pgx.BeginFunc(r.Context(), h.DB, func(tx pgx.Tx) error {
			c, err = Transition(r.Context(), tx, h.River, p.WorkspaceID, id, action, h.now())
			return err
		})
		if err != nil {
			return notFoundAs(err, errNoCampaign())
		}
		h.logger().InfoContext(r.Context(), "campaign "+action, "workspace_id", p.WorkspaceID, "campaign_id", c.ID,
			"status", c.Status)
		httpx.WriteJSON(w, http.StatusOK, c)
		return nil
	}
}

func (h *Handler) campaignStats(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	id, err := campaignID(r)
	if err != nil {
		return err
	}
	s, err := CampaignStats(r.Context(), h.DB, p.WorkspaceID, id, h.now())
	if err != nil {
		return notFoundAs(err, errNoCampaign())
	}
	httpx.WriteJSON(w, http.StatusOK, s)
	return nil
}
