package queue

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
)

// Options configures New.
type Options struct {
	Logger        *slog.Logger
	Workers       *river.Workers // nil: an insert-only client (the API process)
	Queues        map[string]river.QueueConfig
	FetchCooldown time.Duration
	ID            string
	// PeriodicJobs are enqueued on schedule by the elected leader among working clients.
	PeriodicJobs []*river.PeriodicJob
}

// New returns a River client on pool. With Workers it also works jobs once started.
func New(pool *pgxpool.Pool, o Options) (*river.Client[pgx.Tx], error) {
	cfg := &river.Config{
		Logger:               o.Logger,
		ID:                   o.ID,
		FetchCooldown:        o.FetchCooldown,
		FetchPollInterval:    time.Second,
		RescueStuckJobsAfter: 15 * time.Minute,
	}
	if o.Workers != nil {
		cfg.Workers = o.Workers
		cfg.Queues = o.Queues
		cfg.PeriodicJobs = o.PeriodicJobs
	}
	c, err := river.NewClient(riverpgxv5.New(pool), cfg)
	if err != nil {
		return nil, fmt.Errorf("river client: %w", err)
	}
	return c, nil
}
