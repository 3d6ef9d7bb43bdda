package campaigns

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
)

// Sweeper defaults.
const (
	DefaultSweepInterval = 30 * time.Second
	// DefaultFanOutStale is how long a fan-out may go without committing a page before the
	// sweeper starts another (its job died with its process and River has not rescued it yet).
	DefaultFanOutStale = 2 * time.Minute
)

// SweepArgs is the periodic River job that keeps campaigns moving (see SweepWorker). With a
// CampaignID it only closes that cancelled campaign's open recipients (inserted by cancel).
type SweepArgs struct {
	CampaignID int64 `json:"campaign_id,omitempty"`
}

// Kind is the job kind stored in river_job.
func (SweepArgs) Kind() string { return "campaigns.sweep" }

// PeriodicJobs returns the campaigns' periodic jobs: the sweep every interval (default 30 s when
// zero or negative), and once when the client starts. They go on QueueCampaigns.
func PeriodicJobs(interval time.Duration) []*river.PeriodicJob {
	if interval <= 0 {
		interval = DefaultSweepInterval
	}
	return []*river.PeriodicJob{river.NewPeriodicJob(river.PeriodicInterval(interval),
		func() (river.JobArgs, *river.InsertOpts) {
			return SweepArgs{}, &river.InsertOpts{Queue: QueueCampaigns, UniqueOpts: pendingUnique()}
		},
		&river.PeriodicJobOpts{ID: "campaigns.sweep", RunOnStart: true})}
}

// SweepWorker works SweepArgs. For sending campaigns it starts a new fan-out job when the fan-out
// is unfinished and has not committed a page for FanOutStale (and for scheduled ones when their
// send time is FanOutStale past: their job was lost), a requeue job when recipients have
// expired claims, and marks the campaign sent when it is fanned out and nothing is open; for
// cancelled campaigns it marks the open recipients cancelled, in pages. Jobs it inserts are
// unique by args among unfinished jobs, so repeated sweeps do not pile them up (duplicates would
// be harmless: recipients are claimed, and fan-out pages are taken under the campaign's lock).
type SweepWorker struct {
	river.WorkerDefaults[SweepArgs]
	DB *pgxpool.Pool
	// River inserts the jobs; nil uses the client working the job.
	River  *river.Client[pgx.Tx]
	Logger *slog.Logger
	// FanOutStale: see DefaultFanOutStale.
	FanOutStale time.Duration
	// PageSize is the number of recipients cancelled per statement (default 10,000).
	PageSize int
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Timeout bounds a sweep (closing the recipients of a large cancelled campaign takes a while).
func (w *SweepWorker) Timeout(*river.Job[SweepArgs]) time.Duration { return 10 * time.Minute }

// expiredOrWaiting is the SQL test of a recipient a cancel closes, with $2 the time: queued,
// deferred, or claimed with an expired claim. A live claim is a message in flight, whose outcome
// its worker is about to record, so it is left to that worker.
const expiredOrWaiting = `(status IN ('queued', 'deferred') OR (status = 'sending' AND claimed_until < $2))`

// Work runs one sweep.
func (w *SweepWorker) Work(ctx context.Context, job *river.Job[SweepArgs]) error {
	now := time.Now().UTC()
	if w.Now != nil {
		now = w.Now().UTC()
	}
	if job.Args.CampaignID != 0 {
		n, err := w.closeCancelled(ctx, job.Args.CampaignID, now)
		w.logger().InfoContext(ctx, "cancelled campaign closed", "campaign_id", job.Args.CampaignID, "recipients", n)
		return err
	}
	rc := w.River
	if rc == nil {
		rc = river.ClientFromContext[pgx.Tx](ctx)
	}
	var jobs []river.InsertManyParams
	stale := now.Add(-cmp.Or(w.FanOutStale, DefaultFanOutStale))
	ids, err := w.ids(ctx, `SELECT id FROM campaigns WHERE status = 'sending' AND NOT fanout_done
		AND (fanout_at IS NULL OR fanout_at < $1)`, stale)
	if err != nil {
		return err
	}
	// A scheduled campaign whose time is FanOutStale past has lost its fan-out job (discarded
	// after failing every attempt, or deleted): start another. Its send time, as SendTime.
	late, err := w.ids(ctx, `SELECT id FROM campaigns WHERE status = 'scheduled' AND CASE schedule_kind
			WHEN 'at' THEN send_at
			WHEN 'local_time' THEN ((local_date + local_time) - interval '14 hours') AT TIME ZONE 'UTC'
			ELSE scheduled_at END < $1`, stale)
	if err != nil {
		return err
	}
	for _, id := range append(ids, late...) {
		w.logger().WarnContext(ctx, "campaign fan-out stalled; starting another", "campaign_id", id)
		jobs = append(jobs, river.InsertManyParams{Args: FanOutArgs{CampaignID: id},
			InsertOpts: &river.InsertOpts{Queue: QueueCampaigns, UniqueOpts: pendingUnique()}})
	}
	// The redundant IN lets the planner use the partial index of open recipients.
	ids, err = w.ids(ctx, `SELECT c.id FROM campaigns c WHERE c.status = 'sending' AND EXISTS (
		SELECT 1 FROM campaign_recipients r WHERE r.campaign_id = c.id
			AND r.status IN ('queued', 'sending', 'deferred') AND r.status = 'sending' AND r.claimed_until < $1)`, now)
	if err != nil {
		return err
	}
	for _, id := range ids {
		w.logger().WarnContext(ctx, "campaign has expired claims; requeueing", "campaign_id", id)
		jobs = append(jobs, river.InsertManyParams{Args: RequeueArgs{CampaignID: id},
			InsertOpts: &river.InsertOpts{Queue: QueueCampaigns, UniqueOpts: pendingUnique()}})
	}
	if len(jobs) > 0 {
		// InsertMany, not the COPY variant: it skips duplicates of unique jobs instead of failing.
		if _, err := rc.InsertMany(ctx, jobs); err != nil {
			return fmt.Errorf("sweep: insert jobs: %w", err)
		}
	}
	if _, err := w.DB.Exec(ctx, `UPDATE campaigns c SET status = 'sent', finished_at = $1, updated_at = $1
		WHERE c.status = 'sending' AND c.fanout_done AND NOT EXISTS (
			SELECT 1 FROM campaign_recipients r WHERE r.campaign_id = c.id AND r.status IN ('queued', 'sending', 'deferred'))`,
		now); err != nil {
		return fmt.Errorf("sweep: mark sent: %w", err)
	}
	ids, err = w.ids(ctx, `SELECT c.id FROM campaigns c WHERE c.status = 'cancelled' AND EXISTS (
		SELECT 1 FROM campaign_recipients r WHERE r.campaign_id = c.id AND r.status IN ('queued', 'sending', 'deferred'))`)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if _, err := w.closeCancelled(ctx, id, now); err != nil {
			return err
		}
	}
	return nil
}

func (w *SweepWorker) ids(ctx context.Context, query string, args ...any) ([]int64, error) {
	rows, err := w.DB.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	return ids, nil
}

// closeCancelled marks a cancelled campaign's open recipients cancelled, one page per statement
// (short transactions, each walking the open-recipients index from where the last stopped). It
// returns how many it closed.
func (w *SweepWorker) closeCancelled(ctx context.Context, campaignID int64, now time.Time) (int64, error) {
	size := cmp.Or(w.PageSize, DefaultPageSize)
	var total int64
	for {
		tag, err := w.DB.Exec(ctx, `UPDATE campaign_recipients SET status = 'cancelled', claimed_until = NULL,
				updated_at = $2
			WHERE id IN (SELECT id FROM campaign_recipients WHERE campaign_id = $1 AND `+expiredOrWaiting+`
				AND EXISTS (SELECT 1 FROM campaigns WHERE id = $1 AND status = 'cancelled')
				ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)`, campaignID, now, size)
		if err != nil {
			return total, fmt.Errorf("sweep: cancel recipients of campaign %d: %w", campaignID, err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(size) {
			return total, nil
		}
	}
}

func (w *SweepWorker) logger() *slog.Logger {
	if w.Logger == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return w.Logger
}
