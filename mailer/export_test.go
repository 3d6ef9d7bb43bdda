package mailer

import (
	"context"

	"herald/consent"
	"herald/internal/db"
)

// WithoutConsentCheck makes w skip the consent decision (every send allowed, no database read),
// so that a benchmark can compare throughput with the check on and off. Test builds only.
func WithoutConsentCheck(w *SendWorker) {
	w.decide = func(context.Context, db.Querier, consent.Request) (consent.Decision, error) {
		return consent.Decision{Allowed: true}, nil
	}
}
