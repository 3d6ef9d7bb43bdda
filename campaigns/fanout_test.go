package campaigns_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"herald/campaigns"
	"herald/consent"
)

// scheduled creates a campaign of b.ws with in's content and schedules it.
func (b *cBundle) scheduled(t testing.TB, in campaigns.CampaignInput) campaigns.Campaign {
	t.Helper()
	c := b.campaign(t, b.ws, in)
	return b.mustTransition(t, b.ws, c.ID, "schedule")
}

// requireCoverage checks the campaign's batch jobs: each names at most size recipients of one
// send time, scheduled at that send time unless spaced by a throttle, and together they cover
// every open (queued) recipient exactly once and nothing else that is open.
func (b *cBundle) requireCoverage(t testing.TB, campaignID int64, size int) []g1Batch {
	t.Helper()
	recips := b.recipientsOf(t, campaignID)
	byID := map[int64]g1Recipient{}
	for _, r := range recips {
		byID[r.id] = r
	}
	covered := map[int64]int{}
	batches := b.batches(t, campaignID)
	for _, j := range batches {
		if j.args.FirstID > j.args.LastID {
			t.Fatalf("batch %+v: empty range", j.args)
		}
		var n int
		var sendAfter *time.Time
		for id := j.args.FirstID; id <= j.args.LastID; id++ {
			r, ok := byID[id]
			if !ok || r.status != "queued" {
				continue
			}
			n++
			covered[id]++
			if n == 1 {
				sendAfter = r.sendAfter
			} else if (sendAfter == nil) != (r.sendAfter == nil) || (sendAfter != nil && !sendAfter.Equal(*r.sendAfter)) {
				t.Fatalf("batch %+v mixes send times %v and %v", j.args, sendAfter, r.sendAfter)
			}
		}
		if n == 0 || n > size {
			t.Fatalf("batch %+v names %d open recipients, want 1..%d", j.args, n, size)
		}
	}
	for _, r := range recips {
		if r.status == "queued" && covered[r.id] != 1 {
			t.Fatalf("recipient %d is in %d batches, want 1", r.id, covered[r.id])
		}
	}
	return batches
}

// TestFanOut fans out a small audience in several pages: one row per address, suppressed
// addresses recorded with their reason and not batched, exclusions and another workspace's
// contacts left out, and batches of at most BatchSize covering the open recipients once.
func TestFanOut(t *testing.T) {
	t.Parallel()
	b := cSetup(t)
	ctx := context.Background()
	ids := b.contacts(t, b.ws, "c", 95, "")
	// A second contact with the address of the first (case differs): the lower id stands for it.
	var dup int64
	if err := b.pool.QueryRow(ctx, `INSERT INTO contacts (workspace_id, external_id, email) VALUES ($1, 'dup', 'C-1@example.com')
		RETURNING id`, b.ws).Scan(&dup); err != nil {
		t.Fatal(err)
	}
	b.list(t, b.ws, "all", append(ids, dup))
	b.list(t, b.ws, "vip", ids[90:])
	otherWS := b.workspace(t, "other")
	b.list(t, otherWS, "all", b.contacts(t, otherWS, "o", 5, ""))
	reasons := map[int64]string{ids[3]: consent.ReasonHardBounce, ids[40]: consent.ReasonUnsubscribedAll, ids[77]: consent.ReasonComplaint}
	for id, reason := range reasons {
		var email string
		if err := b.pool.QueryRow(ctx, `SELECT email FROM contacts WHERE id = $1`, id).Scan(&email); err != nil {
			t.Fatal(err)
		}
		if _, err := b.svc.Suppress(ctx, b.pool, consent.Suppression{WorkspaceID: b.ws, Address: email, Reason: reason, Actor: "test"}); err != nil {
			t.Fatal(err)
		}
	}

	c := b.scheduled(t, campaigns.CampaignInput{Audience: &campaigns.Audience{Lists: []string{"all"}, ExcludeLists: []string{"vip"}}})
	w := b.fanOut(func(w *campaigns.FanOutWorker) { w.PageSize, w.BatchSize = 20, 7 })
	if err := w.Work(ctx, job(campaigns.FanOutArgs{CampaignID: c.ID})); err != nil {
		t.Fatal(err)
	}

	got := b.recipientsOf(t, c.ID)
	if len(got) != 90 {
		t.Fatalf("%d recipients, want 90 (95 minus 5 excluded, the duplicate address once)", len(got))
	}
	for _, id := range ids[:90] {
		r, ok := got[id]
		switch {
		case !ok:
			t.Errorf("contact %d has no row", id)
		case reasons[id] != "" && (r.status != "suppressed" || r.reason != reasons[id]):
			t.Errorf("contact %d: %s %q, want suppressed %q", id, r.status, r.reason, reasons[id])
		case reasons[id] == "" && r.status != "queued":
			t.Errorf("contact %d: status %s", id, r.status)
		}
	}
	if _, ok := got[dup]; ok {
		t.Error("the duplicate address has a row of its own")
	}
	b.requireCoverage(t, c.ID, 7)
	after := b.status(t, c.ID)
	if after.Status != "sending" || !after.FanoutDone || after.AudienceSize != 90 || after.StartedAt == nil {
		t.Fatalf("campaign after fan-out: %+v", after)
	}
	// Running it again (a duplicate job) writes nothing.
	if err := w.Work(ctx, job(campaigns.FanOutArgs{CampaignID: c.ID})); err != nil {
		t.Fatal(err)
	}
	if n := len(b.recipientsOf(t, c.ID)); n != 90 {
		t.Fatalf("%d recipients after a second run", n)
	}
	b.requireCoverage(t, c.ID, 7)
}

// TestFanOutAllSuppressed: with nothing to send, the fan-out marks the campaign sent itself.
func TestFanOutAllSuppressed(t *testing.T) {
	t.Parallel()
	b := cSetup(t)
	ctx := context.Background()
	b.list(t, b.ws, "all", b.contacts(t, b.ws, "c", 2, ""))
	for i := 1; i <= 2; i++ {
		if _, err := b.svc.Suppress(ctx, b.pool, consent.Suppression{WorkspaceID: b.ws,
			Address: fmt.Sprintf("c-%d@example.com", i), Reason: consent.ReasonManual}); err != nil {
			t.Fatal(err)
		}
	}
	c := b.scheduled(t, campaigns.CampaignInput{})
	if err := b.fanOut().Work(ctx, job(campaigns.FanOutArgs{CampaignID: c.ID})); err != nil {
		t.Fatal(err)
	}
	if s := b.status(t, c.ID); s.Status != "sent" || s.FinishedAt == nil {
		t.Fatalf("status %s, want sent", s.Status)
	}
	if n := len(b.batches(t, c.ID)); n != 0 {
		t.Fatalf("%d batch jobs for an all-suppressed audience", n)
	}
}

// TestFanOutNotNow: a paused or cancelled campaign is left alone, and one whose time has not
// come is snoozed until it.
func TestFanOutNotNow(t *testing.T) {
	t.Parallel()
	b := cSetup(t)
	ctx := context.Background()
	b.list(t, b.ws, "all", b.contacts(t, b.ws, "c", 3, ""))
	for _, action := range []string{"pause", "cancel"} {
		c := b.scheduled(t, campaigns.CampaignInput{})
		b.mustTransition(t, b.ws, c.ID, action)
		if err := b.fanOut().Work(ctx, job(campaigns.FanOutArgs{CampaignID: c.ID})); err != nil {
			t.Fatal(err)
		}
		if n := len(b.recipientsOf(t, c.ID)); n != 0 {
			t.Errorf("%s: %d recipients written", action, n)
		}
	}
	at := b.now.Add(time.Hour)
	c := b.scheduled(t, campaigns.CampaignInput{Schedule: &campaigns.Schedule{Kind: "at", At: &at}})
	w := b.fanOut(func(w *campaigns.FanOutWorker) { w.Now = func() time.Time { return b.now } })
	var snooze *river.JobSnoozeError
	if err := w.Work(ctx, job(campaigns.FanOutArgs{CampaignID: c.ID})); !errors.As(err, &snooze) || snooze.Duration != time.Hour {
		t.Fatalf("early fan-out: err = %v, want a one-hour snooze", err)
	}
	if s := b.status(t, c.ID).Status; s != "scheduled" {
		t.Fatalf("status %s after an early run", s)
	}
}

// TestFanOutThrottle: with per_second, batch k of the campaign is scheduled at start +
// k*BatchSize/per_second, across pages (the position is kept in the campaign row).
func TestFanOutThrottle(t *testing.T) {
	t.Parallel()
	b := cSetup(t)
	ctx := context.Background()
	b.list(t, b.ws, "all", b.contacts(t, b.ws, "c", 100, ""))
	c := b.scheduled(t, campaigns.CampaignInput{Throttle: &campaigns.Throttle{PerSecond: 50, PerDomain: 3}})
	// Pages of 25 split into batches of 10, 10, 5: the spacing follows messages, not batches.
	w := b.fanOut(func(w *campaigns.FanOutWorker) { w.PageSize, w.BatchSize = 25, 10 })
	if err := w.Work(ctx, job(campaigns.FanOutArgs{CampaignID: c.ID})); err != nil {
		t.Fatal(err)
	}
	batches := b.requireCoverage(t, c.ID, 10)
	started := b.status(t, c.ID).StartedAt.Truncate(time.Second)
	var pos int
	for i, j := range batches {
		want := started.Add(time.Duration(pos) * time.Second / 50)
		if !j.scheduledAt.Equal(want) {
			t.Errorf("batch %d (%d..%d): at %s, want start + %d/50 s = %s", i, j.args.FirstID, j.args.LastID,
				j.scheduledAt.UTC().Format(time.RFC3339Nano), pos, want.UTC().Format(time.RFC3339Nano))
		}
		pos += int(j.args.LastID - j.args.FirstID + 1)
	}
	if pos != 100 {
		t.Fatalf("batches name %d recipients", pos)
	}
	if got := b.status(t, c.ID).Throttle; got.PerDomain != 3 || got.PerSecond != 50 {
		t.Fatalf("throttle stored as %+v", got)
	}
}

// TestFanOutCrash: a fan-out that dies after a committed page resumes from it on the next run;
// every member ends with one row and the batches cover every open recipient once.
func TestFanOutCrash(t *testing.T) {
	t.Parallel()
	b := cSetup(t)
	ctx := context.Background()
	ids := b.contacts(t, b.ws, "c", 230, "")
	b.list(t, b.ws, "all", ids)
	c := b.scheduled(t, campaigns.CampaignInput{})
	crash := errors.New("killed")
	for run, dieAfter := range []int{2, 1, 0} {
		w := b.fanOut(func(w *campaigns.FanOutWorker) {
			w.PageSize, w.BatchSize = 40, 15
			w.AfterPage = func(_ context.Context, page int) error {
				if page == dieAfter {
					return crash
				}
				return nil
			}
		})
		err := w.Work(ctx, job(campaigns.FanOutArgs{CampaignID: c.ID}))
		if dieAfter == 0 {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
		if !errors.Is(err, crash) {
			t.Fatalf("run %d: err = %v", run, err)
		}
		// Run 0 commits pages 1-2, run 1 one more page from where run 0 stopped.
		if n, want := len(b.recipientsOf(t, c.ID)), 80+40*run; n != want {
			t.Fatalf("run %d died after page %d with %d rows (want %d)", run, dieAfter, n, want)
		}
	}
	got := b.recipientsOf(t, c.ID)
	if len(got) != len(ids) {
		t.Fatalf("%d rows, want %d", len(got), len(ids))
	}
	b.requireCoverage(t, c.ID, 15)
	if s := b.status(t, c.ID); !s.FanoutDone || s.AudienceSize != int64(len(ids)) {
		t.Fatalf("campaign after the runs: done %v, audience %d", s.FanoutDone, s.AudienceSize)
	}
}

// TestFanOutConcurrent: two fan-out jobs of one campaign at once write each member once, and
// their batches cover each open recipient once (a page is taken under the campaign's lock and
// skipped by the job that finds the resume point moved).
func TestFanOutConcurrent(t *testing.T) {
	t.Parallel()
	b := cSetup(t)
	ctx := context.Background()
	ids := b.contacts(t, b.ws, "c", 600, "")
	b.list(t, b.ws, "all", ids)
	c := b.scheduled(t, campaigns.CampaignInput{})
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() {
			w := b.fanOut(func(w *campaigns.FanOutWorker) { w.PageSize, w.BatchSize = 30, 10 })
			errs[i] = w.Work(ctx, job(campaigns.FanOutArgs{CampaignID: c.ID}))
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if n := len(b.recipientsOf(t, c.ID)); n != len(ids) {
		t.Fatalf("%d rows, want %d", n, len(ids))
	}
	b.requireCoverage(t, c.ID, 10)
	if s := b.status(t, c.ID); s.AudienceSize != int64(len(ids)) {
		t.Fatalf("audience_size %d", s.AudienceSize)
	}
}

// TestRequeue: after lost jobs and dead workers, requeue batches exactly the open recipients:
// queued, deferred, and claimed with an expired claim; not live claims or final ones.
func TestRequeue(t *testing.T) {
	t.Parallel()
	b := cSetup(t)
	ctx := context.Background()
	ids := b.contacts(t, b.ws, "c", 40, "")
	b.list(t, b.ws, "all", ids)
	c := b.scheduled(t, campaigns.CampaignInput{})
	if err := b.fanOut().Work(ctx, job(campaigns.FanOutArgs{CampaignID: c.ID})); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(ctx, `DELETE FROM river_job WHERE kind = 'campaigns.send_batch'`); err != nil {
		t.Fatal(err)
	}
	// By position in id order: 0-9 sent, 10-14 expired claims, 15-19 live claims, 20-24 deferred,
	// 25-29 failed, 30-39 queued.
	_, err := b.pool.Exec(ctx, `
		WITH r AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM campaign_recipients WHERE campaign_id = $1)
		UPDATE campaign_recipients cr SET
			status = CASE WHEN n < 10 THEN 'sent' WHEN n < 20 THEN 'sending' WHEN n < 25 THEN 'deferred'
				WHEN n < 30 THEN 'failed' ELSE 'queued' END,
			claimed_until = CASE WHEN n BETWEEN 10 AND 14 THEN now() - interval '1 minute'
				WHEN n BETWEEN 15 AND 19 THEN now() + interval '1 minute' END
		FROM r WHERE r.id = cr.id`, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	w := &campaigns.RequeueWorker{DB: b.pool, River: b.river, Logger: b.logger, PageSize: 8, BatchSize: 6}
	if err := w.Work(ctx, job(campaigns.RequeueArgs{CampaignID: c.ID})); err != nil {
		t.Fatal(err)
	}
	rows, err := b.pool.Query(ctx, `SELECT id, row_number() OVER (ORDER BY id) - 1 FROM campaign_recipients
		WHERE campaign_id = $1 ORDER BY id`, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	pos := map[int64]int{}
	var id, n int64
	for rows.Next() {
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		pos[id] = int(n)
	}
	open := func(p int) bool { return p >= 10 && p < 15 || p >= 20 && p < 25 || p >= 30 }
	// A range may span closed rows (a live claim, a failure) between open ones: the batch worker
	// claims only open rows. What matters is that each open one is in exactly one range.
	covered := map[int]int{}
	for _, j := range b.batches(t, c.ID) {
		var in int
		for id := j.args.FirstID; id <= j.args.LastID; id++ {
			if p, ok := pos[id]; ok && open(p) {
				covered[p]++
				in++
			}
		}
		if in == 0 || in > 6 {
			t.Errorf("batch %+v names %d open recipients, want 1..6", j.args, in)
		}
	}
	for p := range 40 {
		want := 0
		if open(p) {
			want = 1
		}
		if covered[p] != want {
			t.Errorf("recipient at position %d is in %d batches, want %d", p, covered[p], want)
		}
	}
	// A paused campaign is not requeued (resume does it).
	b.mustTransition(t, b.ws, c.ID, "pause")
	before := len(b.batches(t, c.ID))
	if err := w.Work(ctx, job(campaigns.RequeueArgs{CampaignID: c.ID})); err != nil {
		t.Fatal(err)
	}
	if after := len(b.batches(t, c.ID)); after != before {
		t.Fatalf("requeue of a paused campaign inserted %d jobs", after-before)
	}
}

// TestSweep: a stalled fan-out or a lost fan-out job gets a new job, expired claims a requeue job (each once however
// often the sweep runs), a cancelled campaign's open recipients are closed, and a fanned-out
// campaign with nothing open is marked sent.
func TestSweep(t *testing.T) {
	t.Parallel()
	b := cSetup(t)
	ctx := context.Background()
	b.list(t, b.ws, "all", b.contacts(t, b.ws, "c", 30, ""))
	fan := func() campaigns.Campaign {
		c := b.scheduled(t, campaigns.CampaignInput{})
		if err := b.fanOut().Work(ctx, job(campaigns.FanOutArgs{CampaignID: c.ID})); err != nil {
			t.Fatal(err)
		}
		return c
	}
	stalled := b.scheduled(t, campaigns.CampaignInput{})
	if _, err := b.pool.Exec(ctx, `UPDATE campaigns SET status = 'sending', started_at = now() - interval '1 hour',
		fanout_at = now() - interval '3 minutes' WHERE id = $1`, stalled.ID); err != nil {
		t.Fatal(err)
	}
	fresh := b.scheduled(t, campaigns.CampaignInput{})
	if _, err := b.pool.Exec(ctx, `UPDATE campaigns SET status = 'sending', started_at = now(), fanout_at = now()
		WHERE id = $1`, fresh.ID); err != nil {
		t.Fatal(err)
	}
	// Scheduled campaigns whose fan-out job was lost: one due three minutes ago, one local-time
	// campaign whose day has come; and one due in an hour, whose job is merely waiting.
	lostNow := b.scheduled(t, campaigns.CampaignInput{})
	inAnHour := b.now.Add(time.Hour)
	future := b.scheduled(t, campaigns.CampaignInput{Schedule: &campaigns.Schedule{Kind: "at", At: &inAnHour}})
	lostLocal := b.scheduled(t, campaigns.CampaignInput{Schedule: &campaigns.Schedule{Kind: "local_time",
		LocalDate: b.now.AddDate(0, 0, 3).Format("2006-01-02"), LocalTime: "08:00"}})
	for _, q := range []string{
		`UPDATE campaigns SET scheduled_at = now() - interval '3 minutes', local_date = current_date - 2 WHERE id = ANY($1)`,
		`DELETE FROM river_job WHERE kind = 'campaigns.fan_out' AND (args->>'campaign_id')::bigint = ANY($1)`,
	} {
		if _, err := b.pool.Exec(ctx, q, []int64{lostNow.ID, lostLocal.ID}); err != nil {
			t.Fatal(err)
		}
	}
	claims := fan()
	if _, err := b.pool.Exec(ctx, `UPDATE campaign_recipients SET status = 'sending', claimed_until = now() - interval '1 second'
		WHERE id = (SELECT min(id) FROM campaign_recipients WHERE campaign_id = $1)`, claims.ID); err != nil {
		t.Fatal(err)
	}
	cancelled := fan()
	b.mustTransition(t, b.ws, cancelled.ID, "cancel")
	const live = 1 // a message in flight when the campaign was cancelled
	if _, err := b.pool.Exec(ctx, `UPDATE campaign_recipients SET status = 'sending', claimed_until = now() + interval '1 minute'
		WHERE id = (SELECT min(id) FROM campaign_recipients WHERE campaign_id = $1)`, cancelled.ID); err != nil {
		t.Fatal(err)
	}
	done := fan()
	if _, err := b.pool.Exec(ctx, `UPDATE campaign_recipients SET status = 'sent' WHERE campaign_id = $1`, done.ID); err != nil {
		t.Fatal(err)
	}

	w := &campaigns.SweepWorker{DB: b.pool, River: b.river, Logger: b.logger, PageSize: 7}
	for range 2 {
		if err := w.Work(ctx, job(campaigns.SweepArgs{})); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name      string
		id        int64
		kind      string
		want, was int
	}{
		{"stalled fan-out", stalled.ID, "campaigns.fan_out", 2, 1}, // the scheduling job, plus one
		{"fresh fan-out", fresh.ID, "campaigns.fan_out", 1, 1},
		{"lost fan-out job, kind now", lostNow.ID, "campaigns.fan_out", 1, 0},
		{"lost fan-out job, local time", lostLocal.ID, "campaigns.fan_out", 1, 0},
		{"fan-out job waiting for its time", future.ID, "campaigns.fan_out", 1, 1},
		{"expired claims", claims.ID, "campaigns.requeue", 1, 0},
		{"no expired claims", done.ID, "campaigns.requeue", 0, 0},
	} {
		if n := b.jobCount(t, tc.kind, tc.id); n != tc.want {
			t.Errorf("%s: %d %s jobs, want %d", tc.name, n, tc.kind, tc.want)
		}
	}
	var open, closed int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status IN ('queued', 'sending', 'deferred')),
		count(*) FILTER (WHERE status = 'cancelled') FROM campaign_recipients WHERE campaign_id = $1`, cancelled.ID).
		Scan(&open, &closed); err != nil {
		t.Fatal(err)
	}
	if open != live || closed != 30-live {
		t.Errorf("cancelled campaign: %d open (want the %d live claim), %d cancelled", open, live, closed)
	}
	if s := b.status(t, done.ID).Status; s != "sent" {
		t.Errorf("fanned-out campaign with nothing open: %s, want sent", s)
	}
	if s := b.status(t, claims.ID).Status; s != "sending" {
		t.Errorf("campaign with an expired claim: %s", s)
	}
	// The cancel's own sweep job closes only its campaign.
	if err := w.Work(ctx, job(campaigns.SweepArgs{CampaignID: cancelled.ID})); err != nil {
		t.Fatal(err)
	}
	if jobs := campaigns.PeriodicJobs(0); len(jobs) != 1 {
		t.Fatalf("PeriodicJobs: %d jobs", len(jobs))
	}
}
