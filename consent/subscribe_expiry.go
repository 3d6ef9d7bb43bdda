package consent

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"herald/internal/httpx"
)

// confirmedRetention is how long a confirmed request is kept: it holds an address no longer
// needed once the ledger has the proof, and is kept a while only to answer "already confirmed".
const confirmedRetention = 30 * 24 * time.Hour

// SubscribeExpiryArgs is the periodic River job that deletes expired subscribe requests.
type SubscribeExpiryArgs struct{}

// Kind is the job kind stored in river_job.
func (SubscribeExpiryArgs) Kind() string { return "consent.subscribe_expiry" }

// SubscribeExpiryWorker deletes unconfirmed subscribe requests past their expiry and confirmed
// ones older than 30 days, counting the unconfirmed as herald_subscribe_requests_total{outcome=
// "expired"}.
type SubscribeExpiryWorker struct {
	river.WorkerDefaults[SubscribeExpiryArgs]
	DB      *pgxpool.Pool
	Metrics *Metrics
	Logger  *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Work deletes what has expired, in one statement per kind.
func (w *SubscribeExpiryWorker) Work(ctx context.Context, _ *river.Job[SubscribeExpiryArgs]) error {
	now := time.Now()
	if w.Now != nil {
		now = w.Now()
	}
	expired, err := w.DB.Exec(ctx, `DELETE FROM subscribe_requests WHERE confirmed_at IS NULL AND expires_at <= $1`, now)
	if err != nil {
		return fmt.Errorf("subscribe expiry: %w", err)
	}
	old, err := w.DB.Exec(ctx, `DELETE FROM subscribe_requests WHERE confirmed_at <= $1`, now.Add(-confirmedRetention))
	if err != nil {
		return fmt.Errorf("subscribe expiry: confirmed: %w", err)
	}
	if n := expired.RowsAffected(); n > 0 && w.Metrics != nil {
		w.Metrics.SubscribeRequests.WithLabelValues(subscribeExpired).Add(float64(n))
	}
	w.logger().InfoContext(ctx, "subscribe requests expired", "unconfirmed", expired.RowsAffected(), "confirmed", old.RowsAffected())
	return nil
}

func (w *SubscribeExpiryWorker) logger() *slog.Logger { return httpx.LoggerOrDiscard(w.Logger) }

// SubscribeExpiryJob runs the expiry every hour, and once when the client starts: the schedule is
// kept in memory only, so a process restarted more often than hourly would otherwise never run it.
// The job goes on River's default queue, which the worker process must serve.
func SubscribeExpiryJob() *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(time.Hour),
		func() (river.JobArgs, *river.InsertOpts) {
			return SubscribeExpiryArgs{}, &river.InsertOpts{Queue: river.QueueDefault}
		},
		&river.PeriodicJobOpts{ID: "consent.subscribe_expiry", RunOnStart: true})
}
