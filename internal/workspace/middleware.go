package workspace

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"herald/internal/db"
	"herald/internal/httpx"
)

type ctxKey struct{}

// FromContext returns the principal that Auth stored for the request.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}

// MustFromContext returns the request's principal; routes behind Auth always have one.
func MustFromContext(ctx context.Context) Principal {
	p, ok := FromContext(ctx)
	if !ok {
		panic("workspace: handler mounted without Auth middleware")
	}
	return p
}

// WithPrincipal returns ctx carrying p (for tests and internal callers).
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// Auth authenticates `Authorization: Bearer KEY` against the database on every request and stores
// the principal in the request context.
func Auth(q db.Querier, logger *slog.Logger) func(http.Handler) http.Handler {
	return (&Authenticator{DB: q}).Middleware(logger)
}

// Middleware authenticates `Authorization: Bearer KEY` and stores the principal in the request
// context.
func (a *Authenticator) Middleware(logger *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
			if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
				w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
				httpx.WriteError(w, r, logger, httpx.NewProblem(http.StatusUnauthorized, "an API key is required: Authorization: Bearer KEY"))
				return
			}
			p, err := a.Authenticate(r.Context(), strings.TrimSpace(key))
			if errors.Is(err, ErrBadKey) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="herald", error="invalid_token"`)
				httpx.WriteError(w, r, logger, httpx.NewProblem(http.StatusUnauthorized, "the API key is not valid"))
				return
			}
			if err != nil {
				httpx.WriteError(w, r, logger, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
		})
	}
}

// Require answers 403 unless the request's key holds at least one of scopes.
func Require(logger *slog.Logger, scopes ...string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, ok := FromContext(r.Context())
			if !ok || !slices.ContainsFunc(scopes, p.Has) {
				httpx.WriteError(w, r, logger, httpx.NewProblem(http.StatusForbidden,
					"this API key lacks the scope "+strings.Join(scopes, " or ")))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
