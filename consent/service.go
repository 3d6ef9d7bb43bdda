package consent

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Service is the consent package's entry point: it records ledger events, decides sends, keeps
// the suppression list and parses unsubscribe tokens. It holds no state beyond its settings.
type Service struct {
	Keys    *Keys
	Metrics *Metrics
	Logger  *slog.Logger
	// Now is the clock (time.Now when nil); tests pass a fixed one.
	Now func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Metrics are the consent package's Prometheus counters.
type Metrics struct {
	// Blocked counts sends refused at the hand-off, by reason.
	Blocked *prometheus.CounterVec
	// Events counts ledger events, by action and source.
	Events *prometheus.CounterVec
	// Unsubscribes counts withdrawals made by recipients, by channel (one_click, mailto,
	// preference_centre, unsubscribe_all).
	Unsubscribes *prometheus.CounterVec
	// SubscribeRequests counts double opt-in requests by outcome (sent, confirmed, throttled,
	// suppressed, expired).
	SubscribeRequests *prometheus.CounterVec
}

// NewMetrics registers the consent metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Blocked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_consent_blocked_total",
			Help: "Sends refused by the consent decision at the SMTP hand-off, by reason.",
		}, []string{"reason"}),
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_consent_events_total",
			Help: "Consent ledger events recorded, by action and source.",
		}, []string{"action", "source"}),
		Unsubscribes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_unsubscribes_total",
			Help: "Withdrawals made by recipients, by channel.",
		}, []string{"channel"}),
		SubscribeRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_subscribe_requests_total",
			Help: "Double opt-in requests, by outcome.",
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.Blocked, m.Events, m.Unsubscribes, m.SubscribeRequests)
	return m
}
