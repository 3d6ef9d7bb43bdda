package campaigns_test

import (
	"context"
	"testing"
	"time"

	"herald/campaigns"
)

// lastSunday returns the last Sunday of month in the first year from now's on which it is more
// than two days ahead.
func lastSunday(now time.Time, month time.Month) time.Time {
	for y := now.Year(); ; y++ {
		d := time.Date(y, month+1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, -1)
		for d.Weekday() != time.Sunday {
			d = d.AddDate(0, 0, -1)
		}
		if d.After(now.Add(48 * time.Hour)) {
			return d
		}
	}
}

// TestLocalTimeSendAfter fans out a local-time campaign to contacts in several time zones on the
// days Europe switches to and from summer time: each recipient's send_after is 02:30 on their own
// clock (the fallback zone's for contacts with no zone or an invalid one), a skipped 02:30 falls
// at 03:30 summer time, a repeated 02:30 at its second occurrence; and each batch holds one send
// time and is scheduled at it.
func TestLocalTimeSendAfter(t *testing.T) {
	t.Parallel()
	b := cSetup(t)
	ctx := context.Background()
	zones := []string{"Europe/Berlin", "America/New_York", "Asia/Tokyo", "", "Mars/Olympus"}
	var ids []int64
	tzOf := map[int64]string{}
	for i, tz := range zones {
		for _, id := range b.contacts(t, b.ws, "z"+string(rune('a'+i)), 7, tz) {
			ids = append(ids, id)
			tzOf[id] = tz
		}
	}
	b.list(t, b.ws, "all", ids)
	for _, tc := range []struct {
		name string
		day  time.Time
		want map[string]time.Duration // per zone: send time minus the day's 00:00 UTC
	}{
		{"summer time begins", lastSunday(b.now, time.March), map[string]time.Duration{
			"Europe/Berlin":    time.Hour + 30*time.Minute,   // 02:30 does not exist: 03:30 CEST
			"America/New_York": 6*time.Hour + 30*time.Minute, // EDT since mid-March
			"Asia/Tokyo":       -6*time.Hour - 30*time.Minute,
			"":                 -3 * time.Hour, // fallback Asia/Kolkata, UTC+5:30
			"Mars/Olympus":     -3 * time.Hour,
		}},
		{"summer time ends", lastSunday(b.now, time.October), map[string]time.Duration{
			"Europe/Berlin":    time.Hour + 30*time.Minute, // 02:30 happens twice: the second, CET
			"America/New_York": 6*time.Hour + 30*time.Minute,
			"Asia/Tokyo":       -6*time.Hour - 30*time.Minute,
			"":                 -3 * time.Hour,
			"Mars/Olympus":     -3 * time.Hour,
		}},
	} {
		s := campaigns.Schedule{Kind: "local_time", LocalDate: tc.day.Format("2006-01-02"), LocalTime: "02:30",
			FallbackTimezone: "Asia/Kolkata"}
		c := b.scheduled(t, campaigns.CampaignInput{Schedule: &s})
		// The fan-out starts when UTC+14 reaches 02:30, i.e. at 12:30 UTC the day before.
		if got, want := c.SendTime(), tc.day.Add(-11*time.Hour-30*time.Minute); !got.Equal(want) {
			t.Fatalf("%s: send time %s, want %s", tc.name, got, want)
		}
		w := b.fanOut(func(w *campaigns.FanOutWorker) {
			w.PageSize, w.BatchSize = 8, 4
			w.Now = func() time.Time { return c.SendTime() }
		})
		if err := w.Work(ctx, job(campaigns.FanOutArgs{CampaignID: c.ID})); err != nil {
			t.Fatal(err)
		}
		got := b.recipientsOf(t, c.ID)
		if len(got) != len(ids) {
			t.Fatalf("%s: %d recipients", tc.name, len(got))
		}
		byID := map[int64]time.Time{}
		for cid, r := range got {
			want := tc.day.Add(tc.want[tzOf[cid]])
			if r.sendAfter == nil || !r.sendAfter.Equal(want) {
				t.Errorf("%s: contact in %q: send_after %v, want %s", tc.name, tzOf[cid], r.sendAfter, want)
				continue
			}
			byID[r.id] = *r.sendAfter
		}
		for _, j := range b.requireCoverage(t, c.ID, 4) {
			if !j.scheduledAt.Equal(byID[j.args.FirstID]) {
				t.Errorf("%s: batch %+v at %s, want its send time %s", tc.name, j.args, j.scheduledAt, byID[j.args.FirstID])
			}
		}
	}
}

// TestLocalTimeThrottle: with a local-time schedule the per-second spacing restarts at each
// send time, so one zone's batches do not delay another's.
func TestLocalTimeThrottle(t *testing.T) {
	t.Parallel()
	b := cSetup(t)
	ctx := context.Background()
	ids := append(b.contacts(t, b.ws, "tokyo", 20, "Asia/Tokyo"), b.contacts(t, b.ws, "utc", 20, "UTC")...)
	b.list(t, b.ws, "all", ids)
	day := b.now.Add(72 * time.Hour).Format("2006-01-02")
	c := b.scheduled(t, campaigns.CampaignInput{Schedule: &campaigns.Schedule{Kind: "local_time", LocalDate: day, LocalTime: "10:00"},
		Throttle: &campaigns.Throttle{PerSecond: 10}})
	w := b.fanOut(func(w *campaigns.FanOutWorker) {
		w.PageSize, w.BatchSize = 15, 5
		w.Now = func() time.Time { return c.SendTime() }
	})
	if err := w.Work(ctx, job(campaigns.FanOutArgs{CampaignID: c.ID})); err != nil {
		t.Fatal(err)
	}
	recips := b.recipientsOf(t, c.ID)
	sendAfter := map[int64]time.Time{}
	for _, r := range recips {
		sendAfter[r.id] = *r.sendAfter
	}
	pos := map[time.Time]int{}
	for _, j := range b.requireCoverage(t, c.ID, 5) {
		start := sendAfter[j.args.FirstID]
		want := start.Add(time.Duration(pos[start]) * time.Second / 10)
		if !j.scheduledAt.Equal(want) {
			t.Errorf("batch %+v at %s, want %s", j.args, j.scheduledAt.UTC(), want.UTC())
		}
		pos[start] += int(j.args.LastID - j.args.FirstID + 1)
	}
	if len(pos) != 2 || pos[sendAfter[recips[ids[0]].id]] != 20 {
		t.Fatalf("positions per send time: %v", pos)
	}
}
