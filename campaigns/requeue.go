package campaigns

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"herald/internal/db"
	"herald/internal/httpx"
)

// RequeueWorker works RequeueArgs: it inserts SendBatchArgs jobs for a sending campaign's open
// recipients, those queued or deferred and those whose claim has expired (their worker died).
// It runs on resume and when the sweeper finds expired claims. Its ranges may overlap ranges of
// jobs still waiting; that is harmless, as the batch worker claims each recipient once.
type RequeueWorker struct {
	river.WorkerDefaults[RequeueArgs]
	DB *pgxpool.Pool
	// River inserts the batch jobs; nil uses the client working the job.
	River  *river.Client[pgx.Tx]
	Logger *slog.Logger
	// PageSize is the number of recipients read per transaction (default 10,000).
	PageSize int
	// BatchSize is the largest number of recipients a SendBatchArgs job names (default DefaultBatchSize).
	BatchSize int
	// JobTimeout bounds one run of the job (default 1h; negative: none).
	JobTimeout time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Timeout is the job's timeout (River's default is one minute).
func (w *RequeueWorker) Timeout(*river.Job[RequeueArgs]) time.Duration {
	return cmp.Or(w.JobTimeout, defaultJobTimeout)
}

// requeueOpen selects a page of a campaign's open recipients by id: queued, deferred, or claimed
// by a worker whose lease has run out.
const requeueOpen = `
	SELECT id, send_after FROM campaign_recipients
	WHERE campaign_id = $1 AND id > $2
		AND (status IN ('queued', 'deferred') OR (status = 'sending' AND claimed_until < $3))
	ORDER BY id LIMIT $4`

// Work pages through the open recipients in id order and inserts, in one transaction per page,
// batch jobs of at most BatchSize of them that never mix send times. Send times are
// max(send_after, now), and a per-second throttle spaces the batches from there.
func (w *RequeueWorker) Work(ctx context.Context, job *river.Job[RequeueArgs]) error {
	id := job.Args.CampaignID
	c, err := Load(ctx, w.DB, id)
	if errors.Is(err, db.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("requeue: %w", err)
	}
	if c.Status != StatusSending {
		return nil // paused: resume requeues; finished: nothing to do
	}
	rc := w.River
	if rc == nil {
		rc = river.ClientFromContext[pgx.Tx](ctx)
	}
	now := time.Now().UTC()
	if w.Now != nil {
		now = w.Now().UTC()
	}
	size := cmp.Or(w.PageSize, DefaultPageSize)
	plan := throttlePlan{} // this run's spacing; the fan-out's plan is for its own start instants
	start := func(sa *time.Time) time.Time {
		if sa != nil && sa.After(now) {
			return *sa
		}
		return now
	}
	var after, requeued int64
	for {
		var n int
		err := pgx.BeginFunc(ctx, w.DB, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, requeueOpen, id, after, now, size)
			if err != nil {
				return err
			}
			var open openRows
			var rid int64
			var sa *time.Time
			if _, err := pgx.ForEachRow(rows, []any{&rid, &sa}, func() error {
				open.ids = append(open.ids, rid)
				open.sendAfters = append(open.sendAfters, sa)
				return nil
			}); err != nil {
				return err
			}
			if n = len(open.ids); n == 0 {
				return nil
			}
			after = open.ids[n-1]
			jobs := planBatches(id, open, cmp.Or(w.BatchSize, DefaultBatchSize), c.Throttle.PerSecond, plan, start)
			_, err = rc.InsertManyFastTx(ctx, tx, jobs)
			return err
		})
		if err != nil {
			return fmt.Errorf("requeue campaign %d: %w", id, err)
		}
		requeued += int64(n)
		if n < size {
			break
		}
	}
	w.logger().InfoContext(ctx, "campaign requeued", "campaign_id", id, "recipients", requeued)
	return nil
}

func (w *RequeueWorker) logger() *slog.Logger { return httpx.LoggerOrDiscard(w.Logger) }
