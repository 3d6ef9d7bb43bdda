package consent

import (
	"context"
	"log/slog"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/internal/httpx"
)

// Handler serves the consent package's HTTP endpoints: the authenticated API (Routes), the
// public double opt-in endpoint (SubscribeRoutes, under /v1) and the recipients' pages
// (PageRoutes: one-click unsubscribe, preference centre, confirmation links).
type Handler struct {
	DB      *pgxpool.Pool
	Service *Service
	Logger  *slog.Logger
	// MaxBodyBytes limits a JSON request body (default 1 MiB).
	MaxBodyBytes int64
	// BaseURL is the public URL of Herald's pages, without a trailing slash.
	BaseURL string
	// Mailer sends double opt-in confirmation emails through the transactional path.
	Mailer Mailer
	// SubscribeTTL is how long a confirmation link stays valid (default 72h).
	SubscribeTTL time.Duration
	// Limits throttles the public endpoints; nil uses the defaults.
	Limits *Limits
	// Rights carries out export and erasure (rights_api.go); nil leaves the preference centre
	// without its export button's effect.
	Rights *Rights
}

// Mailer sends the email that confirms a double opt-in request, as a transactional message
// inserted and enqueued in tx (so the request and its email commit together).
type Mailer interface {
	SendConfirmation(ctx context.Context, tx pgx.Tx, c Confirmation) (messageID string, err error)
}

// Confirmation is a double opt-in confirmation email.
type Confirmation struct {
	WorkspaceID int64
	RequestID   string // the subscribe request, used as the message's idempotency key
	From        string
	To          string
	ToName      string
	Subject     string
	Text        string
	HTML        string
}

// PageRoutes mounts the recipients' pages at the root of r: /u/{token} (one-click unsubscribe and
// preference centre) and the double opt-in confirmation link.
func (h *Handler) PageRoutes(r chi.Router) {
	h.unsubscribeRoutes(r)
	h.confirmRoutes(r)
}

func (h *Handler) logger() *slog.Logger { return httpx.LoggerOrDiscard(h.Logger) }

func (h *Handler) maxBody() int64 { return httpx.LimitOr(h.MaxBodyBytes, 1<<20) }
