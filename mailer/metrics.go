package mailer

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the mailer's Prometheus series. Labels hold only bounded values.
type Metrics struct {
	Messages     *prometheus.CounterVec   // herald_messages_total{stream,outcome}
	SendDuration *prometheus.HistogramVec // herald_smtp_send_duration_seconds{outcome}
	Accepted     *prometheus.CounterVec   // herald_messages_accepted_total{stream}
}

// NewMetrics creates the mailer's series and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_messages_total",
			Help: "Delivery outcomes by stream: sent, deferred (will retry), failed, suppressed.",
		}, []string{"stream", "outcome"}),
		SendDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_smtp_send_duration_seconds",
			Help:    "Time to hand one message to the SMTP relay, by outcome (ok, temporary, permanent).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"outcome"}),
		Accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_messages_accepted_total",
			Help: "Messages accepted by the API and queued, by stream.",
		}, []string{"stream"}),
	}
	reg.MustRegister(m.Messages, m.SendDuration, m.Accepted)
	for _, s := range []string{StreamTransactional, StreamMarketing} {
		for _, o := range []string{StatusSent, StatusDeferred, StatusFailed, StatusSuppressed} {
			m.Messages.WithLabelValues(s, o)
		}
		m.Accepted.WithLabelValues(s)
	}
	return m
}
