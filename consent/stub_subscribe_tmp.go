package consent

import "github.com/go-chi/chi/v5"

// Temporary: replaced by subscribe.go.
func (h *Handler) confirmRoutes(r chi.Router) {}
