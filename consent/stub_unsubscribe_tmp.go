package consent

import "github.com/go-chi/chi/v5"

// Temporary: replaced by unsubscribe.go.
func (h *Handler) unsubscribeRoutes(r chi.Router) {}
