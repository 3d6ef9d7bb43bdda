package consent

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"herald/internal/db"
	"herald/internal/httpx"
)

// Retention job defaults.
const (
	DefaultRetentionInterval = time.Hour
	// DefaultRetentionBatch is the rows one statement removes at most: each is its own short
	// transaction, so no lock is held long enough to hold up a send.
	DefaultRetentionBatch = 5000
)

// OptOutPurger removes, in tx, the marketing data it holds of the given contacts of the
// workspace, who have all opted out of every marketing purpose long enough ago, and returns how
// many rows it removed or emptied. Running it again for the same contacts removes nothing more.
type OptOutPurger interface {
	PurgeOptedOut(ctx context.Context, tx pgx.Tx, workspaceID int64, contactIDs []int64) (int64, error)
}

// AgedPurger removes what the workspace's policy says is too old at now, in statements of at
// most batch rows each (each its own transaction), and returns how many rows it removed.
type AgedPurger interface {
	PurgeAged(ctx context.Context, q db.Querier, workspaceID int64, p RetentionPolicy, now time.Time, batch int) (int64, error)
}

// WorkspacePurger deletes the rows it holds of a deleted workspace, in statements of at most
// batch rows each, before the workspace's own row goes (whose cascade removes the rest), and
// returns how many it deleted.
type WorkspacePurger interface {
	PurgeWorkspace(ctx context.Context, q db.Querier, workspaceID int64, batch int) (int64, error)
}

// RetentionStep is one package's part of a policy and the label its removals are counted under.
type RetentionStep[P any] struct {
	What   string
	Purger P
}

// RetentionArgs is the periodic River job that enforces the retention policies.
type RetentionArgs struct{}

// Kind is the job kind stored in river_job.
func (RetentionArgs) Kind() string { return "consent.retention" }

// RetentionJob runs the retention job every interval (DefaultRetentionInterval when zero or
// negative), and once when the client starts, on River's default queue. At most one is pending
// at a time.
func RetentionJob(interval time.Duration) *river.PeriodicJob {
	if interval <= 0 {
		interval = DefaultRetentionInterval
	}
	return river.NewPeriodicJob(river.PeriodicInterval(interval),
		func() (river.JobArgs, *river.InsertOpts) {
			return RetentionArgs{}, &river.InsertOpts{Queue: river.QueueDefault, UniqueOpts: river.UniqueOpts{
				ByState: []rivertype.JobState{rivertype.JobStateAvailable, rivertype.JobStatePending,
					rivertype.JobStateRunning, rivertype.JobStateRetryable, rivertype.JobStateScheduled}}}
		},
		&river.PeriodicJobOpts{ID: "consent.retention", RunOnStart: true})
}

// RetentionWorker enforces every workspace's retention policy:
//   - a deleted workspace whose grace period has passed is purged: each WorkspacePurger deletes
//     its rows in batches, then the consent package its own, then the workspace row (cascade);
//   - the contacts who opted out of all marketing (no marketing purpose granted, or an
//     unsubscribed_all suppression of their address) OptedOutDays or more ago lose their
//     marketing data (each OptOutPurger, a few contacts per transaction);
//   - each AgedPurger removes what is older than the policy allows.
//
// Each run logs counts (never personal data) and adds them to herald_retention_removed_total.
type RetentionWorker struct {
	river.WorkerDefaults[RetentionArgs]
	DB *pgxpool.Pool
	// Defaults is the policy of workspaces without their own (DefaultRetentionPolicy when zero).
	Defaults  RetentionPolicy
	OptedOut  []RetentionStep[OptOutPurger]
	Aged      []RetentionStep[AgedPurger]
	Workspace []WorkspacePurger
	Metrics   *RetentionMetrics
	Logger    *slog.Logger
	// Batch is the rows per statement (DefaultRetentionBatch when zero).
	Batch int
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Timeout bounds a run: a first run over a large backlog takes a while, and every batch is
// committed, so a run cut short loses nothing.
func (w *RetentionWorker) Timeout(*river.Job[RetentionArgs]) time.Duration { return 50 * time.Minute }

// Work runs every policy once.
func (w *RetentionWorker) Work(ctx context.Context, _ *river.Job[RetentionArgs]) error {
	_, err := w.Run(ctx)
	return err
}

// Run runs every policy once and returns what it removed, by label.
func (w *RetentionWorker) Run(ctx context.Context) (map[string]int64, error) {
	now := time.Now()
	if w.Now != nil {
		now = w.Now()
	}
	start := time.Now()
	removed := map[string]int64{}
	defer func() {
		w.count(removed)
		args := []any{"duration", time.Since(start).Round(time.Millisecond)}
		for _, k := range []string{RemovedWorkspaces, RemovedWorkspaceRows, RemovedOptedOutEvents,
			RemovedOptedOutRecipients, RemovedExpiredEvents, RemovedMessageBodies} {
			args = append(args, k, removed[k])
		}
		w.logger().InfoContext(ctx, "retention run", args...)
	}()
	spaces, err := w.workspaces(ctx)
	if err != nil {
		return removed, err
	}
	for _, ws := range spaces {
		if ws.deletedAt != nil {
			if ws.deletedAt.After(now.Add(-days(ws.policy.DeletionGraceDays))) {
				continue // still in its grace period
			}
			n, err := w.purgeWorkspace(ctx, ws.id, now)
			removed[RemovedWorkspaceRows] += n
			if err != nil {
				return removed, err
			}
			removed[RemovedWorkspaces]++
			continue
		}
		if err := w.optedOut(ctx, ws.id, ws.policy, now, removed); err != nil {
			return removed, err
		}
		for _, s := range w.Aged {
			n, err := s.Purger.PurgeAged(ctx, w.DB, ws.id, ws.policy, now, w.batch())
			removed[s.What] += n
			if err != nil {
				return removed, fmt.Errorf("retention: workspace %d: %s: %w", ws.id, s.What, err)
			}
		}
	}
	return removed, nil
}

type retentionWorkspace struct {
	id        int64
	deletedAt *time.Time
	policy    RetentionPolicy
}

// workspaces lists every workspace with its effective policy.
func (w *RetentionWorker) workspaces(ctx context.Context) ([]retentionWorkspace, error) {
	d := w.Defaults
	if d == (RetentionPolicy{}) {
		d = DefaultRetentionPolicy()
	}
	rows, err := w.DB.Query(ctx, `
		SELECT w.id, w.deleted_at, coalesce(p.opted_out_days, $1), coalesce(p.tracking_days, $2),
			coalesce(p.body_days, $3), coalesce(p.deletion_grace_days, $4)
		FROM workspaces w LEFT JOIN retention_policies p ON p.workspace_id = w.id
		ORDER BY w.id`, d.OptedOutDays, d.TrackingDays, d.BodyDays, d.DeletionGraceDays)
	if err != nil {
		return nil, fmt.Errorf("retention: list workspaces: %w", err)
	}
	var out []retentionWorkspace
	var ws retentionWorkspace
	_, err = pgx.ForEachRow(rows, []any{&ws.id, &ws.deletedAt, &ws.policy.OptedOutDays, &ws.policy.TrackingDays,
		&ws.policy.BodyDays, &ws.policy.DeletionGraceDays}, func() error {
		out = append(out, ws)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("retention: list workspaces: %w", err)
	}
	return out, nil
}

func (w *RetentionWorker) batch() int { return cmp.Or(w.Batch, DefaultRetentionBatch) }

func (w *RetentionWorker) count(removed map[string]int64) {
	if w.Metrics == nil {
		return
	}
	for what, n := range removed {
		if n > 0 {
			w.Metrics.Removed.WithLabelValues(what).Add(float64(n))
		}
	}
}

func (w *RetentionWorker) logger() *slog.Logger { return httpx.LoggerOrDiscard(w.Logger) }
