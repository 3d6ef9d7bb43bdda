package consent

import (
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/internal/httpx"
	"herald/internal/workspace"
)

// RetentionHandler serves GET and PUT /v1/retention (admin scope): the workspace's retention
// policy, each change audited.
type RetentionHandler struct {
	DB *pgxpool.Pool
	// Defaults is the policy of workspaces without their own (DefaultRetentionPolicy when zero).
	Defaults RetentionPolicy
	Logger   *slog.Logger
	// MaxBodyBytes limits a request body (default 64 KiB).
	MaxBodyBytes int64
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Routes mounts the endpoints on r, which must already run the workspace authenticator.
func (h *RetentionHandler) Routes(r chi.Router) {
	log := httpx.LoggerOrDiscard(h.Logger)
	r.Group(func(r chi.Router) {
		r.Use(workspace.Require(log, workspace.ScopeAdmin))
		r.Get("/retention", httpx.Handler(log, h.get))
		r.Put("/retention", httpx.Handler(log, h.put))
	})
}

// retentionJSON is a policy as the API shows it: the days, whether the workspace has its own
// policy or the defaults ("workspace" or "default"), and when it was last changed.
type retentionJSON struct {
	RetentionPolicy
	Source    string     `json:"source"`
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
}

func retentionOut(s StoredRetentionPolicy) retentionJSON {
	out := retentionJSON{RetentionPolicy: s.RetentionPolicy, Source: "default", UpdatedAt: s.UpdatedAt}
	if s.Stored {
		out.Source = "workspace"
	}
	return out
}

func (h *RetentionHandler) defaults() RetentionPolicy {
	if h.Defaults == (RetentionPolicy{}) {
		return DefaultRetentionPolicy()
	}
	return h.Defaults
}

func (h *RetentionHandler) get(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	s, err := RetentionPolicyGet(r.Context(), h.DB, p.WorkspaceID, h.defaults())
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, retentionOut(s))
	return nil
}

// retentionBody is a PUT body: an omitted field takes its default.
type retentionBody struct {
	OptedOutDays      *int `json:"opted_out_days"`
	TrackingDays      *int `json:"tracking_days"`
	BodyDays          *int `json:"body_days"`
	DeletionGraceDays *int `json:"deletion_grace_days"`
}

func (h *RetentionHandler) put(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p := workspace.MustFromContext(ctx)
	var body retentionBody
	if err := httpx.DecodeJSON(w, r, httpx.LimitOr(h.MaxBodyBytes, 64<<10), &body); err != nil {
		return err
	}
	in := h.defaults()
	for _, f := range []struct {
		v   *int
		dst *int
	}{{body.OptedOutDays, &in.OptedOutDays}, {body.TrackingDays, &in.TrackingDays},
		{body.BodyDays, &in.BodyDays}, {body.DeletionGraceDays, &in.DeletionGraceDays}} {
		if f.v != nil {
			*f.dst = *f.v
		}
	}
	if err := in.Validate(); err != nil {
		return problem(err)
	}
	now := time.Now()
	if h.Now != nil {
		now = h.Now()
	}
	var out StoredRetentionPolicy
	err := pgx.BeginFunc(ctx, h.DB, func(tx pgx.Tx) error {
		before, err := RetentionPolicyGet(ctx, tx, p.WorkspaceID, h.defaults())
		if err != nil {
			return err
		}
		if err := RetentionPolicyPut(ctx, tx, p.WorkspaceID, in, now); err != nil {
			return err
		}
		if out, err = RetentionPolicyGet(ctx, tx, p.WorkspaceID, h.defaults()); err != nil {
			return err
		}
		return AuditWrite(ctx, tx, Audit{WorkspaceID: p.WorkspaceID, Actor: actor(p), Action: "retention.put",
			Target: "workspace:" + strconv.FormatInt(p.WorkspaceID, 10),
			Detail: map[string]any{"policy": in, "before": retentionOut(before)}})
	})
	if err != nil {
		return problem(err)
	}
	httpx.LoggerOrDiscard(h.Logger).InfoContext(ctx, "retention policy saved", "workspace_id", p.WorkspaceID)
	httpx.WriteJSON(w, http.StatusOK, retentionOut(out))
	return nil
}
