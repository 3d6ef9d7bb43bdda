package tracking

import "github.com/prometheus/client_golang/prometheus"

// EventMetrics are the open and click counters. Their labels are fixed small sets: never a
// workspace, campaign or link.
type EventMetrics struct {
	// Events counts events written, by kind (open, click) and machine (true, false).
	Events *prometheus.CounterVec
	// Dropped counts events lost, by reason: buffer_full (the writer could not keep up within
	// the handler's wait), write_failed (the database refused the batch after retries), closed
	// (an event after shutdown).
	Dropped *prometheus.CounterVec
	// Discarded counts events deliberately not written, by reason: not_allowed (the contact no
	// longer allows tracking, or the workspace turned it off), unknown_recipient (the recipient
	// row or its campaign is gone).
	Discarded *prometheus.CounterVec
}

// NewEventMetrics registers the tracking event metrics with reg.
func NewEventMetrics(reg prometheus.Registerer) *EventMetrics {
	m := &EventMetrics{
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_tracking_events_total",
			Help: "Open and click events written, by kind and whether a machine (proxy, scanner) made them.",
		}, []string{"kind", "machine"}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_tracking_events_dropped_total",
			Help: "Open and click events lost before they were written, by reason.",
		}, []string{"reason"}),
		Discarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_tracking_events_discarded_total",
			Help: "Open and click events not written on purpose (tracking no longer allowed, recipient gone), by reason.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.Events, m.Dropped, m.Discarded)
	return m
}
