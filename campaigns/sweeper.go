package campaigns

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"herald/internal/httpx"
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

	// final is where each campaign's open recipients start (see finalPrefix): a sweep reads a
	// campaign's recipients from there, so each is read by about one sweep once it is final.
	final finalPrefix
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
	// Sending and cancelled campaigns: where their open recipients start, whether a claim has
	// expired (requeue), whether nothing is open (mark sent), or what is left to close.
	active, err := w.active(ctx)
	if err != nil {
		return err
	}
	var cancelled []int64
	for _, c := range active {
		open, err := w.scan(ctx, c.id, now)
		if err != nil {
			return err
		}
		switch {
		case c.status == StatusCancelled:
			if open.any {
				cancelled = append(cancelled, c.id)
			}
		case open.expired:
			w.logger().WarnContext(ctx, "campaign has expired claims; requeueing", "campaign_id", c.id)
			jobs = append(jobs, river.InsertManyParams{Args: RequeueArgs{CampaignID: c.id},
				InsertOpts: &river.InsertOpts{Queue: QueueCampaigns, UniqueOpts: pendingUnique()}})
		case !open.any && c.fanoutDone:
			sent, err := markSentIfDone(ctx, w.DB, &w.final, c.id)
			if err != nil {
				return fmt.Errorf("sweep: %w", err)
			}
			if sent {
				w.logger().InfoContext(ctx, "campaign sent", "campaign_id", c.id)
			}
		}
	}
	if len(jobs) > 0 {
		// InsertMany, not the COPY variant: it skips duplicates of unique jobs instead of failing.
		if _, err := rc.InsertMany(ctx, jobs); err != nil {
			return fmt.Errorf("sweep: insert jobs: %w", err)
		}
	}
	for _, id := range cancelled {
		if _, err := w.closeCancelled(ctx, id, now); err != nil {
			return err
		}
	}
	return nil
}

type sweptCampaign struct {
	id         int64
	status     string
	fanoutDone bool
}

// active lists the sending campaigns and the cancelled ones that may still have open recipients
// (all cancelled campaigns on the first sweep of a process; then those not yet seen closed).
func (w *SweepWorker) active(ctx context.Context) ([]sweptCampaign, error) {
	rows, err := w.DB.Query(ctx, `SELECT id, status, fanout_done FROM campaigns WHERE status IN ('sending', 'cancelled')`)
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	var out []sweptCampaign
	var c sweptCampaign
	if _, err := pgx.ForEachRow(rows, []any{&c.id, &c.status, &c.fanoutDone}, func() error {
		out = append(out, c)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	return out, nil
}

// sweepScanSQL reads a campaign's recipients from $2 on (below, all are final): the first open
// one, whether any claim has expired by $3, and the last recipient.
const sweepScanSQL = `
	SELECT min(id) FILTER (WHERE status IN ('queued', 'sending', 'deferred')),
		coalesce(bool_or(status = 'sending' AND claimed_until < $3), false), max(id)
	FROM campaign_recipients WHERE campaign_id = $1 AND id >= $2`

type openRecipients struct {
	any     bool // some recipient is open
	expired bool // some claim has expired
}

// scan runs sweepScanSQL and moves the campaign's final prefix up: to its first open recipient,
// or past its last one when none is open (a later fan-out page has higher ids).
func (w *SweepWorker) scan(ctx context.Context, id int64, now time.Time) (openRecipients, error) {
	var firstOpen, last *int64
	var open openRecipients
	if err := w.DB.QueryRow(ctx, sweepScanSQL, id, w.final.from(id), now).Scan(&firstOpen, &open.expired, &last); err != nil {
		return open, fmt.Errorf("sweep: campaign %d: %w", id, err)
	}
	switch {
	case firstOpen != nil:
		open.any = true
		w.final.advance(id, *firstOpen)
	case last != nil:
		w.final.advance(id, *last+1)
	}
	return open, nil
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
// (short transactions, each walking the campaign's recipients from where the last stopped). It
// returns how many it closed.
func (w *SweepWorker) closeCancelled(ctx context.Context, campaignID int64, now time.Time) (int64, error) {
	size := cmp.Or(w.PageSize, DefaultPageSize)
	after := w.final.from(campaignID) - 1
	var total int64
	for {
		var n, last int64
		err := w.DB.QueryRow(ctx, `
			WITH page AS (
				SELECT id FROM campaign_recipients WHERE campaign_id = $1 AND id > $4 AND `+expiredOrWaiting+`
					AND EXISTS (SELECT 1 FROM campaigns WHERE id = $1 AND status = 'cancelled')
				ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED
			), closed AS (
				UPDATE campaign_recipients r SET status = 'cancelled', claimed_until = NULL, updated_at = $2
				FROM page WHERE r.id = page.id
				RETURNING r.id
			)
			SELECT count(*), coalesce(max(id), 0) FROM closed`, campaignID, now, size, after).Scan(&n, &last)
		if err != nil {
			return total, fmt.Errorf("sweep: cancel recipients of campaign %d: %w", campaignID, err)
		}
		total += n
		if n < int64(size) {
			return total, nil
		}
		after = last
	}
}

func (w *SweepWorker) logger() *slog.Logger { return httpx.LoggerOrDiscard(w.Logger) }
