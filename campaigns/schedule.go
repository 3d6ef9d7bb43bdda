package campaigns

import (
	"fmt"
	"strings"
	"time"

	"herald/internal/httpx"
)

// Schedule kinds.
const (
	ScheduleNow       = "now"
	ScheduleAt        = "at"
	ScheduleLocalTime = "local_time"
)

// Schedule is when a campaign is sent: now (when it is scheduled), at an instant, or at a wall
// clock time on a date in each recipient's time zone (the contact's, else FallbackTimezone).
type Schedule struct {
	Kind             string     `json:"kind"`
	At               *time.Time `json:"at,omitempty"`
	LocalDate        string     `json:"local_date,omitempty"` // YYYY-MM-DD
	LocalTime        string     `json:"local_time,omitempty"` // HH:MM, 24-hour
	FallbackTimezone string     `json:"fallback_timezone,omitempty"`
}

// Time zone offsets in use span UTC-12 to UTC+14: a local time is reached first at UTC+14.
var earliestZone = time.FixedZone("UTC+14", 14*3600)

const (
	localDateLayout = "2006-01-02"
	localTimeLayout = "15:04"
	maxTimezoneLen  = 64
)

// normalize checks the schedule's shape (not whether its time has passed) and fills defaults:
// kind now, fallback time zone UTC. Faults are 422 problems naming schedule.<field>.
func (s Schedule) normalize() (Schedule, error) {
	if s.Kind == "" {
		s.Kind = ScheduleNow
	}
	if s.FallbackTimezone == "" {
		s.FallbackTimezone = "UTC"
	}
	if _, err := loadZone(s.FallbackTimezone); err != nil {
		return s, httpx.Invalid("schedule.fallback_timezone", "must be an IANA time zone name such as Europe/Berlin")
	}
	switch s.Kind {
	case ScheduleNow:
		if s.At != nil || s.LocalDate != "" || s.LocalTime != "" {
			return s, httpx.Invalid("schedule.kind", "now takes no at, local_date or local_time")
		}
	case ScheduleAt:
		if s.At == nil {
			return s, httpx.Invalid("schedule.at", "is required for kind at (RFC 3339, e.g. 2026-12-01T09:00:00Z)")
		}
		if s.LocalDate != "" || s.LocalTime != "" {
			return s, httpx.Invalid("schedule.kind", "at takes no local_date or local_time")
		}
		at := s.At.UTC().Truncate(time.Microsecond) // the column's precision
		s.At = &at
	case ScheduleLocalTime:
		if s.At != nil {
			return s, httpx.Invalid("schedule.at", "local_time schedules take local_date and local_time, not at")
		}
		if _, err := time.Parse(localDateLayout, s.LocalDate); err != nil {
			return s, httpx.Invalid("schedule.local_date", "must be a date YYYY-MM-DD")
		}
		if _, err := time.Parse(localTimeLayout, s.LocalTime); err != nil {
			return s, httpx.Invalid("schedule.local_time", "must be a 24-hour time HH:MM")
		}
	default:
		return s, httpx.Invalid("schedule.kind", "must be now, at or local_time")
	}
	return s, nil
}

// checkFuture refuses a schedule whose time has passed at now. A local time must lie ahead in
// every time zone, so that no recipient's moment is already gone when the campaign is scheduled.
func (s Schedule) checkFuture(now time.Time) error {
	switch s.Kind {
	case ScheduleAt:
		if s.At.Before(now) {
			return httpx.Invalid("schedule.at", "is in the past; use kind now to send at once")
		}
	case ScheduleLocalTime:
		first, err := s.localInstant(earliestZone)
		if err != nil {
			return err
		}
		if first.Before(now) {
			return httpx.Invalid("schedule.local_time", fmt.Sprintf(
				"%s %s has already begun in some time zones (at %s UTC in UTC+14); choose a later date",
				s.LocalDate, s.LocalTime, first.UTC().Format("2006-01-02 15:04")))
		}
	}
	return nil
}

// localInstant is the instant at which the wall clock in loc shows the schedule's local date and
// time. A time skipped by a daylight saving change (02:30 when clocks jump from 02:00 to 03:00)
// is read with the offset before the change, i.e. it falls one hour later by the new clock
// (03:30); a time that occurs twice (when clocks go back) is taken at its later occurrence.
// Both are how time.Date resolves them.
func (s Schedule) localInstant(loc *time.Location) (time.Time, error) {
	d, err := time.Parse(localDateLayout, s.LocalDate)
	if err != nil {
		return time.Time{}, httpx.Invalid("schedule.local_date", "must be a date YYYY-MM-DD")
	}
	t, err := time.Parse(localTimeLayout, s.LocalTime)
	if err != nil {
		return time.Time{}, httpx.Invalid("schedule.local_time", "must be a 24-hour time HH:MM")
	}
	return time.Date(d.Year(), d.Month(), d.Day(), t.Hour(), t.Minute(), 0, 0, loc), nil
}

// SendTime is when the campaign's fan-out starts: the moment it was scheduled (now), its at, or
// for a local time the earliest instant any time zone reaches it (UTC+14). It is zero for a
// campaign not yet scheduled with kind now.
func (c *Campaign) SendTime() time.Time {
	switch c.Schedule.Kind {
	case ScheduleAt:
		if c.Schedule.At != nil {
			return *c.Schedule.At
		}
	case ScheduleLocalTime:
		t, err := c.Schedule.localInstant(earliestZone)
		if err == nil {
			return t
		}
	}
	if c.ScheduledAt != nil {
		return *c.ScheduledAt
	}
	return time.Time{}
}

// loadZone loads an IANA time zone, refusing "Local" (the server's zone means nothing to a
// recipient) and names that cannot be one.
func loadZone(name string) (*time.Location, error) {
	if name == "" || name == "Local" || len(name) > maxTimezoneLen || strings.ContainsFunc(name, func(r rune) bool {
		return r < 0x21 || r > 0x7e
	}) {
		return nil, fmt.Errorf("time zone %q: not an IANA name", name)
	}
	return time.LoadLocation(name)
}

// sendAfter computes recipients' send times for a local-time schedule: the schedule's wall clock
// in the contact's time zone, or in the fallback zone when the contact has none or an invalid
// one. It caches loaded zones and the instant per zone; one is used per fan-out page.
type sendAfter struct {
	s        Schedule
	fallback time.Time
	byZone   map[string]time.Time
}

func newSendAfter(s Schedule) (*sendAfter, error) {
	if s.Kind != ScheduleLocalTime {
		return nil, nil
	}
	loc, err := loadZone(s.FallbackTimezone)
	if err != nil {
		loc = time.UTC // validated when scheduled; a zone removed from tzdata since falls back to UTC
	}
	fb, err := s.localInstant(loc)
	if err != nil {
		return nil, err
	}
	return &sendAfter{s: s, fallback: fb, byZone: map[string]time.Time{}}, nil
}

// at returns the send time for a contact in time zone tz.
func (sa *sendAfter) at(tz string) time.Time {
	if tz == "" {
		return sa.fallback
	}
	if t, ok := sa.byZone[tz]; ok {
		return t
	}
	t := sa.fallback
	if loc, err := loadZone(tz); err == nil {
		if lt, err := sa.s.localInstant(loc); err == nil {
			t = lt
		}
	}
	sa.byZone[tz] = t
	return t
}
