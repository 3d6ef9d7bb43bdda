package consent

import "github.com/go-chi/chi/v5"

// Temporary: replaced by unsubscribe.go and subscribe.go.
func (h *Handler) unsubscribeRoutes(r chi.Router) {}
func (h *Handler) confirmRoutes(r chi.Router)     {}

type Limits struct{}
