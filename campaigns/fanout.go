package campaigns

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"herald/consent"
	"herald/internal/db"
	"herald/internal/httpx"
)

// Defaults of the fan-out and requeue workers.
const (
	DefaultPageSize  = 10_000
	DefaultBatchSize = 500
	// defaultJobTimeout replaces River's one minute: a large fan-out pages for longer, and it
	// commits each page, so a timeout only costs the page in flight.
	defaultJobTimeout = time.Hour
)

// FanOutWorker works FanOutArgs: it expands a campaign's audience into campaign_recipients rows
// and SendBatchArgs jobs, one page of the audience per transaction (see Work).
type FanOutWorker struct {
	river.WorkerDefaults[FanOutArgs]
	DB *pgxpool.Pool
	// River inserts the batch jobs; nil uses the client working the job.
	River *river.Client[pgx.Tx]
	// Consent's Keys hash addresses for the suppression lookup.
	Consent *consent.Service
	Logger  *slog.Logger
	// PageSize is the number of audience members per page and transaction (default 10,000).
	PageSize int
	// BatchSize is the largest number of recipients a SendBatchArgs job names (default DefaultBatchSize).
	BatchSize int
	// JobTimeout bounds one run of the job (default 1h; negative: none).
	JobTimeout time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// AfterPage, when set, is called after each committed page (numbered from 1 in this run); an
	// error ends the run as if the process had died there. Tests inject crashes with it.
	AfterPage func(ctx context.Context, page int) error
}

// Timeout is the job's timeout (River's default is one minute).
func (w *FanOutWorker) Timeout(*river.Job[FanOutArgs]) time.Duration {
	return cmp.Or(w.JobTimeout, defaultJobTimeout)
}

func (w *FanOutWorker) now() time.Time {
	if w.Now != nil {
		return w.Now().UTC()
	}
	return time.Now().UTC()
}

func (w *FanOutWorker) logger() *slog.Logger { return httpx.LoggerOrDiscard(w.Logger) }

// Work fans the campaign out from its committed resume point. A campaign that is not scheduled
// or sending is left alone (resume inserts a new job); one scheduled for later is snoozed until
// its time. Each page is read outside any transaction, its suppressed addresses looked up in one
// query, and then written in one transaction that locks the campaign row and re-reads the resume
// point: if another fan-out job of the campaign moved it meanwhile, this one skips to it, so two
// jobs never write the same page. The transaction inserts the page's recipients, the batch jobs
// covering its open ones, and the new resume point together; a crash loses at most the page in
// flight, and a repeated page inserts nothing (UNIQUE (campaign_id, contact_id)).
func (w *FanOutWorker) Work(ctx context.Context, job *river.Job[FanOutArgs]) error {
	id := job.Args.CampaignID
	c, err := Load(ctx, w.DB, id)
	if errors.Is(err, db.ErrNotFound) {
		return nil // deleted with its workspace
	}
	if err != nil {
		return fmt.Errorf("fan out: %w", err)
	}
	if c.Status == StatusScheduled {
		if wait := c.SendTime().Sub(w.now()); wait > time.Second {
			return river.JobSnooze(wait)
		}
		now := w.now()
		_, err := w.DB.Exec(ctx, `UPDATE campaigns SET status = 'sending', started_at = coalesce(started_at, $2),
			fanout_at = $2, updated_at = $2 WHERE id = $1 AND status = 'scheduled'`, id, now)
		if err != nil {
			return fmt.Errorf("fan out: start campaign %d: %w", id, err)
		}
		if c, err = Load(ctx, w.DB, id); err != nil {
			return fmt.Errorf("fan out: %w", err)
		}
	}
	if c.Status != StatusSending || c.FanoutDone {
		return nil
	}
	rc := w.River
	if rc == nil {
		rc = river.ClientFromContext[pgx.Tx](ctx)
	}
	sa, err := newSendAfter(c.Schedule)
	if err != nil {
		return river.JobCancel(fmt.Errorf("fan out campaign %d: %w", id, err))
	}
	size := cmp.Or(w.PageSize, DefaultPageSize)
	after, written := c.FanoutAfter, int64(0)
	for page := 1; ; page++ {
		members, err := AudiencePage(ctx, w.DB, c.WorkspaceID, c.Audience, after, size)
		var p *httpx.Problem
		if errors.As(err, &p) {
			// A list or segment was deleted or broken since scheduling: retrying cannot help.
			w.logger().ErrorContext(ctx, "campaign audience no longer resolves", "campaign_id", id, "err", err)
			return river.JobCancel(fmt.Errorf("fan out campaign %d: %w", id, err))
		}
		if err != nil {
			return fmt.Errorf("fan out campaign %d: %w", id, err)
		}
		rows, err := w.recipients(ctx, &c, members, sa)
		if err != nil {
			return err
		}
		res, err := w.commitPage(ctx, rc, &c, after, rows, len(members) < size)
		if err != nil {
			return err
		}
		if res.stop {
			w.logger().InfoContext(ctx, "campaign fan-out stopped", "campaign_id", id, "status", res.status,
				"fanout_done", res.done, "recipients", written)
			return nil
		}
		if res.skipped {
			after = res.after // another job committed pages meanwhile; go on from its point
			continue
		}
		after, written = res.after, written+res.inserted
		if w.AfterPage != nil {
			if err := w.AfterPage(ctx, page); err != nil {
				return err
			}
		}
		if res.done {
			w.logger().InfoContext(ctx, "campaign fanned out", "campaign_id", id, "recipients", written, "pages", page)
			return nil
		}
	}
}

// recipient is one row to insert into campaign_recipients.
type recipient struct {
	contactID int64
	address   string
	sendAfter *time.Time
	status    string // queued or suppressed
	reason    string // the suppression reason
}

// recipients turns a page of members into rows: suppressed addresses (one query for the page)
// get status suppressed and the list's reason, and local-time campaigns a send time per contact.
// The rows come sorted by (send_after, contact_id), so that the ids they get are contiguous per
// send time and the batch ranges stay short.
func (w *FanOutWorker) recipients(ctx context.Context, c *Campaign, members []Member, sa *sendAfter) ([]recipient, error) {
	if len(members) == 0 {
		return nil, nil
	}
	hashes := make([][]byte, len(members))
	for i, m := range members {
		hashes[i] = w.Consent.Keys.AddressHash(c.WorkspaceID, m.Email)
	}
	rows, err := w.DB.Query(ctx, `SELECT address_hash, reason FROM suppressions
		WHERE workspace_id = $1 AND address_hash = ANY($2::bytea[])`, c.WorkspaceID, hashes)
	if err != nil {
		return nil, fmt.Errorf("fan out campaign %d: suppressions: %w", c.ID, err)
	}
	suppressed := map[string]string{}
	var hash []byte
	var reason string
	if _, err := pgx.ForEachRow(rows, []any{&hash, &reason}, func() error {
		suppressed[string(hash)] = reason
		return nil
	}); err != nil {
		return nil, fmt.Errorf("fan out campaign %d: suppressions: %w", c.ID, err)
	}
	out := make([]recipient, len(members))
	for i, m := range members {
		r := recipient{contactID: m.ContactID, address: m.Email, status: "queued"}
		if reason, ok := suppressed[string(hashes[i])]; ok {
			r.status, r.reason = "suppressed", reason
		}
		if sa != nil {
			t := sa.at(m.Timezone)
			r.sendAfter = &t
		}
		out[i] = r
	}
	if sa != nil {
		slices.SortStableFunc(out, func(a, b recipient) int {
			return cmp.Or(a.sendAfter.Compare(*b.sendAfter), cmp.Compare(a.contactID, b.contactID))
		})
	}
	return out, nil
}

// pageResult is what one page's transaction did.
type pageResult struct {
	after    int64  // the resume point now committed
	inserted int64  // recipients inserted
	done     bool   // the fan-out is done
	skipped  bool   // another job had moved the resume point: nothing written
	stop     bool   // the campaign is no longer sending (or is fanned out): end the run
	status   string // the campaign's state when stopped
}

const recipientInsert = `
	INSERT INTO campaign_recipients (campaign_id, contact_id, address, send_after, status, reason)
	SELECT $1, r.contact_id, r.address, r.send_after, r.status, r.reason
	FROM unnest($2::bigint[], $3::text[], $4::timestamptz[], $5::text[], $6::text[])
		WITH ORDINALITY AS r (contact_id, address, send_after, status, reason, ord)
	ORDER BY r.ord
	ON CONFLICT (campaign_id, contact_id) DO NOTHING
	RETURNING id, send_after, status = 'queued'`

// commitPage writes one page in one transaction (see Work). after is the resume point the page
// was read from; last tells that the page is short, i.e. the audience's end.
func (w *FanOutWorker) commitPage(ctx context.Context, rc *river.Client[pgx.Tx], c *Campaign, after int64, rows []recipient, last bool) (pageResult, error) {
	var res pageResult
	err := pgx.BeginFunc(ctx, w.DB, func(tx pgx.Tx) error {
		var plan throttlePlan
		var startedAt *time.Time
		err := tx.QueryRow(ctx, `SELECT status, fanout_after, fanout_done, throttle_plan, started_at
			FROM campaigns WHERE id = $1 FOR UPDATE`, c.ID).Scan(&res.status, &res.after, &res.done, &plan, &startedAt)
		if err != nil {
			return fmt.Errorf("lock campaign: %w", err)
		}
		if res.status != StatusSending || res.done {
			res.stop = true
			return nil
		}
		if res.after != after {
			res.skipped = true
			return nil
		}
		next, open, err := insertRecipients(ctx, tx, c.ID, rows)
		if err != nil {
			return err
		}
		if len(rows) > 0 {
			res.after = next
		}
		res.inserted = open.total
		start := w.now()
		if startedAt != nil {
			start = *startedAt
		}
		if plan == nil {
			plan = throttlePlan{}
		}
		jobs := planBatches(c.ID, open, cmp.Or(w.BatchSize, DefaultBatchSize), c.Throttle.PerSecond, plan,
			func(sa *time.Time) time.Time {
				if sa != nil {
					return *sa
				}
				return start
			})
		if len(jobs) > 0 {
			if _, err := rc.InsertManyFastTx(ctx, tx, jobs); err != nil {
				return fmt.Errorf("insert batch jobs: %w", err)
			}
		}
		res.done = last
		_, err = tx.Exec(ctx, `UPDATE campaigns SET fanout_after = $2, fanout_done = $3, fanout_at = $4,
			audience_size = audience_size + $5, throttle_plan = $6, updated_at = $4 WHERE id = $1`,
			c.ID, res.after, res.done, w.now(), res.inserted, plan)
		if err != nil {
			return fmt.Errorf("save fan-out progress: %w", err)
		}
		if res.done {
			return markSentIfFinished(ctx, tx, c.ID, w.now())
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("fan out campaign %d: %w", c.ID, err)
	}
	return res, nil
}

// openRows are the inserted recipients still to send, in id order.
type openRows struct {
	ids        []int64
	sendAfters []*time.Time
	total      int64 // every inserted row, open or suppressed
}

// insertRecipients inserts rows (skipping contacts the campaign already has) and returns the
// largest contact id of the page and the open rows it inserted, sorted by id.
func insertRecipients(ctx context.Context, tx pgx.Tx, campaignID int64, rows []recipient) (int64, openRows, error) {
	var open openRows
	if len(rows) == 0 {
		return 0, open, nil
	}
	ids := make([]int64, len(rows))
	addrs := make([]string, len(rows))
	sendAfters := make([]*time.Time, len(rows))
	statuses := make([]string, len(rows))
	reasons := make([]string, len(rows))
	var maxID int64
	for i, r := range rows {
		ids[i], addrs[i], sendAfters[i], statuses[i], reasons[i] = r.contactID, r.address, r.sendAfter, r.status, r.reason
		maxID = max(maxID, r.contactID)
	}
	res, err := tx.Query(ctx, recipientInsert, campaignID, ids, addrs, sendAfters, statuses, reasons)
	if err != nil {
		return 0, open, fmt.Errorf("insert recipients: %w", err)
	}
	type inserted struct {
		id int64
		sa *time.Time
	}
	var got []inserted
	var id int64
	var sa *time.Time
	var isOpen bool
	if _, err := pgx.ForEachRow(res, []any{&id, &sa, &isOpen}, func() error {
		open.total++
		if isOpen {
			got = append(got, inserted{id, sa})
		}
		return nil
	}); err != nil {
		return 0, open, fmt.Errorf("insert recipients: %w", err)
	}
	slices.SortFunc(got, func(a, b inserted) int { return cmp.Compare(a.id, b.id) })
	open.ids = make([]int64, len(got))
	open.sendAfters = make([]*time.Time, len(got))
	for i, g := range got {
		open.ids[i], open.sendAfters[i] = g.id, g.sa
	}
	return maxID, open, nil
}

// throttlePlan is a campaign's per-second throttle position: per start instant (unix seconds),
// the number of messages already given a send time. It is stored in campaigns.throttle_plan so
// the spacing carries on across pages and restarts.
type throttlePlan map[string]int64

// planBatches splits open (sorted by id) into SendBatchArgs jobs of at most size recipients that
// never mix send times, and times them: at start(send_after), and with a per-second rate, each
// batch of a start instant rate-spaced after the ones planned before it (batch k of an instant
// at start + k*size/rate).
func planBatches(campaignID int64, open openRows, size, rate int, plan throttlePlan, start func(*time.Time) time.Time) []river.InsertManyParams {
	var jobs []river.InsertManyParams
	for i := 0; i < len(open.ids); {
		j := i + 1
		for j < len(open.ids) && j-i < size && sameTime(open.sendAfters[j], open.sendAfters[i]) {
			j++
		}
		at := start(open.sendAfters[i])
		if rate > 0 {
			base := at.Unix()
			key := strconv.FormatInt(base, 10)
			pos := plan[key]
			plan[key] = pos + int64(j-i)
			at = time.Unix(base, 0).Add(time.Duration(pos) * time.Second / time.Duration(rate))
		}
		jobs = append(jobs, river.InsertManyParams{
			Args:       SendBatchArgs{CampaignID: campaignID, FirstID: open.ids[i], LastID: open.ids[j-1]},
			InsertOpts: &river.InsertOpts{Queue: QueueCampaigns, ScheduledAt: at.UTC()},
		})
		i = j
	}
	return jobs
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

// markSentIfFinished marks a sending campaign sent once its fan-out is done and no recipient is
// open: for an audience that was all suppressed no batch job would ever do it.
func markSentIfFinished(ctx context.Context, tx pgx.Tx, campaignID int64, now time.Time) error {
	_, err := tx.Exec(ctx, `UPDATE campaigns SET status = 'sent', finished_at = $2, updated_at = $2
		WHERE id = $1 AND status = 'sending' AND fanout_done AND NOT EXISTS (
			SELECT 1 FROM campaign_recipients WHERE campaign_id = $1 AND status IN ('queued', 'sending', 'deferred'))`,
		campaignID, now)
	if err != nil {
		return fmt.Errorf("mark campaign sent: %w", err)
	}
	return nil
}
