package campaigns_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"herald/campaigns"
	"herald/internal/httpx"
)

// TestCampaignTransitions applies every action to a campaign in every state: the allowed ones
// move it and insert their jobs in the same transaction; the others are a *StateError naming the
// current state and change nothing.
func TestCampaignTransitions(t *testing.T) {
	t.Parallel()
	b := cSetup(t)
	ctx := context.Background()
	b.list(t, b.ws, "all", b.contacts(t, b.ws, "c", 3, ""))

	type jobs struct{ fanOut, requeue, sweep int }
	for _, tc := range []struct {
		from       string
		started    bool // the fan-out had begun
		fanoutDone bool
		action     string
		to         string // "" : refused with a *StateError
		jobs       jobs
	}{
		{from: "draft", action: "schedule", to: "scheduled", jobs: jobs{fanOut: 1}},
		{from: "draft", action: "pause"},
		{from: "draft", action: "resume"},
		{from: "draft", action: "cancel", to: "cancelled"},
		{from: "draft", action: "update", to: "draft"},
		{from: "scheduled", action: "schedule"},
		{from: "scheduled", action: "pause", to: "paused"},
		{from: "scheduled", action: "resume"},
		{from: "scheduled", action: "cancel", to: "cancelled"},
		{from: "scheduled", action: "update"},
		{from: "sending", started: true, action: "schedule"},
		{from: "sending", started: true, action: "pause", to: "paused"},
		{from: "sending", started: true, action: "resume"},
		{from: "sending", started: true, action: "cancel", to: "cancelled", jobs: jobs{sweep: 1}},
		{from: "sending", started: true, action: "update"},
		{from: "paused", action: "schedule"},
		{from: "paused", action: "pause"},
		{from: "paused", action: "resume", to: "scheduled", jobs: jobs{fanOut: 1}},
		{from: "paused", started: true, action: "resume", to: "sending", jobs: jobs{fanOut: 1, requeue: 1}},
		{from: "paused", started: true, fanoutDone: true, action: "resume", to: "sending", jobs: jobs{requeue: 1}},
		{from: "paused", action: "cancel", to: "cancelled"},
		{from: "paused", action: "update"},
		{from: "sent", started: true, fanoutDone: true, action: "schedule"},
		{from: "sent", started: true, fanoutDone: true, action: "pause"},
		{from: "sent", started: true, fanoutDone: true, action: "resume"},
		{from: "sent", started: true, fanoutDone: true, action: "cancel"},
		{from: "sent", started: true, fanoutDone: true, action: "update"},
		{from: "cancelled", action: "schedule"},
		{from: "cancelled", action: "pause"},
		{from: "cancelled", action: "resume"},
		{from: "cancelled", action: "cancel"},
		{from: "cancelled", action: "update"},
	} {
		name := tc.from + "/" + tc.action
		c := b.campaign(t, b.ws, campaigns.CampaignInput{})
		var startedAt *time.Time
		if tc.started {
			startedAt = &b.now
		}
		if _, err := b.pool.Exec(ctx, `UPDATE campaigns SET status = $2, started_at = $3, fanout_done = $4 WHERE id = $1`,
			c.ID, tc.from, startedAt, tc.fanoutDone); err != nil {
			t.Fatal(err)
		}
		var got campaigns.Campaign
		var err error
		if tc.action == "update" {
			got, err = b.update(c.ID, campaigns.CampaignInput{Name: ptr("renamed")})
		} else {
			got, err = b.transition(b.ws, c.ID, tc.action)
		}
		after := b.status(t, c.ID)
		if tc.to == "" {
			var se *campaigns.StateError
			if !errors.As(err, &se) || se.Status != tc.from || se.Action != tc.action {
				t.Errorf("%s: err = %v, want a StateError naming %s", name, err, tc.from)
			}
			if after.Status != tc.from || after.Name != c.Name {
				t.Errorf("%s: refused, yet the campaign is now %s %q", name, after.Status, after.Name)
			}
		} else {
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if got.Status != tc.to || after.Status != tc.to {
				t.Errorf("%s: status = %s (stored %s), want %s", name, got.Status, after.Status, tc.to)
			}
		}
		gotJobs := jobs{b.jobCount(t, "campaigns.fan_out", c.ID), b.jobCount(t, "campaigns.requeue", c.ID),
			b.jobCount(t, "campaigns.sweep", c.ID)}
		if gotJobs != tc.jobs {
			t.Errorf("%s: jobs (fan-out, requeue, sweep) = %v, want %v", name, gotJobs, tc.jobs)
		}
	}
}

func (b *cBundle) update(id int64, in campaigns.CampaignInput) (campaigns.Campaign, error) {
	var c campaigns.Campaign
	tx, err := b.pool.Begin(context.Background())
	if err != nil {
		return c, err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck
	c, err = campaigns.CampaignUpdate(context.Background(), tx, b.ws, id, in, b.now)
	if err != nil {
		return c, err
	}
	return c, tx.Commit(context.Background())
}

// TestScheduleSendTime: the fan-out job is inserted with the schedule's send time, in the
// transaction that schedules: now, at, and for a local time the moment UTC+14 reaches it.
func TestScheduleSendTime(t *testing.T) {
	t.Parallel()
	b := cSetup(t)
	b.list(t, b.ws, "all", b.contacts(t, b.ws, "c", 1, ""))
	at := b.now.Add(36 * time.Hour)
	date := b.now.Add(72 * time.Hour).Format("2006-01-02")
	d, _ := time.Parse("2006-01-02", date)
	for _, tc := range []struct {
		s    campaigns.Schedule
		want time.Time
	}{
		{campaigns.Schedule{Kind: "now"}, b.now},
		{campaigns.Schedule{Kind: "at", At: &at}, at},
		{campaigns.Schedule{Kind: "local_time", LocalDate: date, LocalTime: "09:30"},
			time.Date(d.Year(), d.Month(), d.Day(), 9, 30, 0, 0, time.UTC).Add(-14 * time.Hour)},
	} {
		c := b.campaign(t, b.ws, campaigns.CampaignInput{Schedule: &tc.s})
		b.mustTransition(t, b.ws, c.ID, "schedule")
		var scheduledAt time.Time
		if err := b.pool.QueryRow(context.Background(), `SELECT scheduled_at FROM river_job
			WHERE kind = 'campaigns.fan_out' AND (args->>'campaign_id')::bigint = $1`, c.ID).Scan(&scheduledAt); err != nil {
			t.Fatal(err)
		}
		if !scheduledAt.Equal(tc.want) {
			t.Errorf("%s: fan-out at %s, want %s", tc.s.Kind, scheduledAt.UTC(), tc.want)
		}
	}
}

// TestScheduleRefusals: scheduling validates everything again (a draft may have gone stale since
// it was written) and answers a 422 naming what is wrong. Each case breaks the draft and
// schedules it in a transaction rolled back afterwards, so the shared fixtures stay; that a
// refusal stores nothing is checked over HTTP (TestCampaignsHostile).
func TestScheduleRefusals(t *testing.T) {
	t.Parallel()
	b := cSetup(t)
	ctx := context.Background()
	b.list(t, b.ws, "all", b.contacts(t, b.ws, "c", 1, ""))
	b.template(t, b.ws, "nolink", `<p>Hello</p><p>{{postal_address}}</p>`)
	b.template(t, b.ws, "noaddress", `<p><a href="{{unsubscribe_url}}">Unsubscribe</a></p>`)
	b.template(t, b.ws, "bare", `<p>Hello</p>`)
	inAnHour := b.now.Add(time.Hour)
	for _, tc := range []struct {
		name     string
		in       campaigns.CampaignInput
		breakSQL string        // run before scheduling
		late     time.Duration // scheduled this long after b.now
		field    string
		detail   string
	}{
		{name: "no unsubscribe link", in: campaigns.CampaignInput{Template: ptr("nolink")}, field: "template",
			detail: "the template lacks the unsubscribe link"},
		{name: "no postal address", in: campaigns.CampaignInput{Template: ptr("noaddress")}, field: "template",
			detail: "the template lacks the postal address"},
		{name: "neither", in: campaigns.CampaignInput{Template: ptr("bare")}, field: "template",
			detail: "the template lacks the unsubscribe link and the postal address"},
		{name: "purpose deleted", breakSQL: `DELETE FROM purposes WHERE name = 'news'`, field: "purpose"},
		{name: "list deleted", breakSQL: `DELETE FROM lists WHERE name = 'all'`, field: "audience.lists"},
		{name: "time passed", in: campaigns.CampaignInput{Schedule: &campaigns.Schedule{Kind: "at", At: &inAnHour}},
			late: 2 * time.Hour, field: "schedule.at", detail: "in the past"},
	} {
		c := b.campaign(t, b.ws, tc.in)
		tx, err := b.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if tc.breakSQL != "" {
			if _, err := tx.Exec(ctx, tc.breakSQL); err != nil {
				t.Fatal(err)
			}
		}
		_, err = campaigns.Transition(ctx, tx, b.river, b.ws, c.ID, "schedule", b.now.Add(tc.late))
		tx.Rollback(ctx) //nolint:errcheck
		checkInvalid(t, tc.name, err, tc.field, tc.detail)
	}
}

func checkInvalid(t *testing.T, name string, err error, field, detail string) {
	t.Helper()
	var p *httpx.Problem
	if !errors.As(err, &p) || p.Status != 422 || p.Field != field {
		t.Errorf("%s: err = %v, want a 422 naming %s", name, err, field)
		return
	}
	if detail != "" && !strings.Contains(p.Detail, detail) {
		t.Errorf("%s: detail %q does not say %q", name, p.Detail, detail)
	}
}

// TestAudienceInUseCannotBeDeleted: a list or segment named by a scheduled, sending or paused
// campaign cannot be deleted (its fan-out would fail half-way); once the campaign is cancelled,
// or when only a draft names it, it can.
func TestAudienceInUseCannotBeDeleted(t *testing.T) {
	t.Parallel()
	b := cSetup(t)
	ctx := context.Background()
	b.list(t, b.ws, "all", b.contacts(t, b.ws, "c", 2, ""))
	b.list(t, b.ws, "vip", nil)
	if _, _, err := campaigns.SegmentSave(ctx, b.pool, b.ws, "pros", `attributes.plan = "pro"`); err != nil {
		t.Fatal(err)
	}
	c := b.campaign(t, b.ws, campaigns.CampaignInput{Audience: &campaigns.Audience{
		Lists: []string{"all"}, ExcludeLists: []string{"vip"}, ExcludeSegments: []string{"pros"}}})
	b.mustTransition(t, b.ws, c.ID, "schedule")
	for _, del := range []func() error{
		func() error { return campaigns.ListDelete(ctx, b.pool, b.ws, "all") },
		func() error { return campaigns.ListDelete(ctx, b.pool, b.ws, "vip") },
		func() error { return campaigns.SegmentDelete(ctx, b.pool, b.ws, "pros") },
	} {
		if err := del(); !errors.Is(err, campaigns.ErrAudienceInUse) {
			t.Errorf("delete under a scheduled campaign: %v", err)
		}
	}
	b.mustTransition(t, b.ws, c.ID, "pause")
	if err := campaigns.ListDelete(ctx, b.pool, b.ws, "vip"); !errors.Is(err, campaigns.ErrAudienceInUse) {
		t.Errorf("delete under a paused campaign: %v", err)
	}
	b.mustTransition(t, b.ws, c.ID, "cancel")
	if err := campaigns.ListDelete(ctx, b.pool, b.ws, "vip"); err != nil {
		t.Errorf("delete after cancel: %v", err)
	}
	if err := campaigns.SegmentDelete(ctx, b.pool, b.ws, "pros"); err != nil {
		t.Errorf("delete after cancel: %v", err)
	}
}
