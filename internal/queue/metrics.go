// Package queue builds Herald's River client and reports River's queue depth and job outcomes as
// Prometheus metrics. Domain packages register their workers and queues; this package only wires.
package queue

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
)

// depthCollector reports jobs waiting or running per queue and state, read at scrape time.
type depthCollector struct {
	db     *pgxpool.Pool
	logger *slog.Logger
	queues []string
	desc   *prometheus.Desc
}

var depthStates = []string{"available", "scheduled", "retryable", "running"}

// NewDepthCollector returns a collector of herald_queue_jobs{queue,state}. The named queues are
// always reported, with zeros when empty, so dashboards and alerts see a series at all times.
func NewDepthCollector(db *pgxpool.Pool, logger *slog.Logger, queues ...string) prometheus.Collector {
	return &depthCollector{db: db, logger: logger, queues: queues, desc: prometheus.NewDesc("herald_queue_jobs",
		"River jobs not yet finished, by queue and state (available, scheduled, retryable, running).",
		[]string{"queue", "state"}, nil)}
}

func (c *depthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *depthCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rows, err := c.db.Query(ctx, `
		SELECT queue, state::text, count(*) FROM river_job
		WHERE state IN ('available', 'scheduled', 'retryable', 'running')
		GROUP BY 1, 2`)
	if err != nil {
		c.logger.Warn("queue depth metric", "err", err)
		return
	}
	counts := map[[2]string]int64{}
	for _, q := range c.queues {
		for _, s := range depthStates {
			counts[[2]string{q, s}] = 0
		}
	}
	var queue, state string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&queue, &state, &n}, func() error {
		counts[[2]string{queue, state}] = n
		return nil
	})
	if err != nil {
		c.logger.Warn("queue depth metric", "err", err)
		return
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
}

// CountOutcomes counts River job events into herald_jobs_total{kind,outcome} until ctx ends.
func CountOutcomes(ctx context.Context, client *river.Client[pgx.Tx], reg prometheus.Registerer) {
	jobs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_jobs_total",
		Help: "River job executions by kind and outcome (completed, failed = will retry or discarded, cancelled, snoozed).",
	}, []string{"kind", "outcome"})
	reg.MustRegister(jobs)
	events, cancel := client.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed,
		river.EventKindJobCancelled, river.EventKindJobSnoozed)
	go func() {
		defer cancel()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-events:
				if !ok {
					return
				}
				outcome := string(ev.Kind)
				switch ev.Kind {
				case river.EventKindJobCompleted:
					outcome = "completed"
				case river.EventKindJobFailed:
					outcome = "failed"
				case river.EventKindJobCancelled:
					outcome = "cancelled"
				case river.EventKindJobSnoozed:
					outcome = "snoozed"
				}
				jobs.WithLabelValues(ev.Job.Kind, outcome).Inc()
			}
		}
	}()
}
