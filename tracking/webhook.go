package tracking

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/consent"
	"herald/internal/httpx"
	"herald/internal/workspace"
)

// webhookKeyDomain signs a workspace's webhook key: the {key} of /hooks/PROVIDER/{key}.
const webhookKeyDomain = "herald/webhook/v1"

// Body limits of the webhooks: SendGrid batches events (up to some hundreds per POST); SNS
// messages are at most 256 KiB.
const (
	maxWebhookBody  = 1 << 20
	maxSettingsBody = 64 << 10
	// maxEventsPerPost bounds the events of one SendGrid POST handled.
	maxEventsPerPost = 1000
)

// WebhookKey is the workspace's webhook key, shown by GET /v1/feedback/settings in its URLs.
func WebhookKey(keys *consent.Keys, workspaceID int64) string {
	return keys.SignIDs(webhookKeyDomain, workspaceID)
}

// WebhookHandler serves the provider webhooks (public, authenticated by the signed key in the
// path and each provider's own signature or credentials) and the admin API of their settings.
type WebhookHandler struct {
	DB       *pgxpool.Pool
	Keys     *consent.Keys
	Feedback *Feedback
	Logger   *slog.Logger
	// BaseURL is the public origin the webhook URLs are shown under.
	BaseURL string
	// SNS verifies Amazon SNS messages and confirms subscriptions.
	SNS *SNSVerifier
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

func (h *WebhookHandler) logger() *slog.Logger { return httpx.LoggerOrDiscard(h.Logger) }

func (h *WebhookHandler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *WebhookHandler) maxSettingsBody() int64 { return maxSettingsBody }

// Routes mounts the settings API on an authenticated /v1 router (admin scope).
func (h *WebhookHandler) Routes(r chi.Router) {
	log := h.logger()
	r.Group(func(r chi.Router) {
		r.Use(workspace.Require(log, workspace.ScopeAdmin))
		r.Get("/feedback/settings", httpx.Handler(log, h.settingsGet))
		r.Put("/feedback/settings", httpx.Handler(log, h.settingsPut))
	})
}

// HookRoutes mounts the public webhooks.
func (h *WebhookHandler) HookRoutes(r chi.Router) {
	log := h.logger()
	r.Post("/hooks/ses/{key}", httpx.Handler(log, h.ses))
	r.Post("/hooks/sendgrid/{key}", httpx.Handler(log, h.sendGrid))
	r.Post("/hooks/postmark/{key}", httpx.Handler(log, h.postmark))
}

// hookWorkspace checks the path's webhook key and returns the workspace's settings.
func (h *WebhookHandler) hookWorkspace(r *http.Request) (WebhookSettings, error) {
	ids, err := h.Keys.ParseIDs(webhookKeyDomain, chi.URLParam(r, "key"), 1)
	if err != nil || ids[0] == 0 {
		return WebhookSettings{}, httpx.NotFound("no such webhook")
	}
	return WebhookSettingsGet(r.Context(), h.DB, ids[0])
}

// readBody reads the request body, at most maxWebhookBody bytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, httpx.NewProblem(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds %d bytes", maxWebhookBody))
	}
	if err != nil {
		return nil, httpx.BadRequest("the body could not be read")
	}
	return b, nil
}

// Problems of the webhooks.
func unauthorized(detail string) error { return httpx.NewProblem(http.StatusUnauthorized, detail) }
func forbidden(detail string) error    { return httpx.NewProblem(http.StatusForbidden, detail) }

// processAll hands each report to Feedback.Process; a report that names nothing of the
// workspace is skipped. It answers how many were recorded and how many were repeats.
func (h *WebhookHandler) processAll(ctx context.Context, reports []Report) (recorded, duplicates, unmatched int, err error) {
	for _, rep := range reports {
		out, err := h.Feedback.Process(ctx, rep)
		switch {
		case errors.Is(err, ErrUnmatched):
			unmatched++
		case err != nil:
			return recorded, duplicates, unmatched, err
		case out.Duplicate:
			duplicates++
		default:
			recorded++
		}
	}
	return recorded, duplicates, unmatched, nil
}

// writeProcessed answers a webhook POST with what was done.
func writeProcessed(w http.ResponseWriter, recorded, duplicates, unmatched, ignored int) {
	httpx.WriteJSON(w, http.StatusOK, map[string]int{"recorded": recorded, "duplicates": duplicates,
		"unmatched": unmatched, "ignored": ignored})
}
