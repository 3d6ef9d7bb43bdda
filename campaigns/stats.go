package campaigns

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/internal/db"
)

// Stats is a campaign's progress.
type Stats struct {
	Status       string `json:"status"`
	AudienceSize int64  `json:"audience_size"` // recipients written by the fan-out so far
	FanoutDone   bool   `json:"fanout_done"`
	Queued       int64  `json:"queued"`
	Sending      int64  `json:"sending"`
	Sent         int64  `json:"sent"`
	Deferred     int64  `json:"deferred"`
	Failed       int64  `json:"failed"`
	Cancelled    int64  `json:"cancelled"`
	// Suppressed counts the recipients dropped at fan-out, by suppression reason.
	Suppressed map[string]int64 `json:"suppressed"`
	// Progress is the share of the recipients written so far whose outcome is final (sent,
	// failed, suppressed, cancelled): until the fan-out is done it is the share of those.
	Progress float64 `json:"progress"`
	// RatePerSecond is the messages sent in the last 60 seconds, per second.
	RatePerSecond float64 `json:"rate_per_second"`
	// ETASeconds is the time left at the current rate; null while the fan-out runs or nothing is
	// being sent.
	ETASeconds *float64 `json:"eta_seconds"`
}

// CampaignStats computes the workspace's campaign's stats with one GROUP BY over its recipients
// (a scan of the campaign's rows: about a quarter of a second per million on two cores).
func CampaignStats(ctx context.Context, q db.Querier, workspaceID, id int64, now time.Time) (Stats, error) {
	c, err := CampaignGet(ctx, q, workspaceID, id)
	if err != nil {
		return Stats{}, err
	}
	s := Stats{Status: c.Status, AudienceSize: c.AudienceSize, FanoutDone: c.FanoutDone, Suppressed: map[string]int64{}}
	rows, err := q.Query(ctx, `
		SELECT status, CASE WHEN status = 'suppressed' THEN reason ELSE '' END, count(*),
			count(*) FILTER (WHERE status = 'sent' AND sent_at > $2)
		FROM campaign_recipients WHERE campaign_id = $1
		GROUP BY 1, 2`, c.ID, now.Add(-time.Minute))
	if err != nil {
		return Stats{}, fmt.Errorf("campaign stats: %w", err)
	}
	var status, reason string
	var n, recent int64
	_, err = pgx.ForEachRow(rows, []any{&status, &reason, &n, &recent}, func() error {
		switch status {
		case "queued":
			s.Queued += n
		case "sending":
			s.Sending += n
		case "sent":
			s.Sent += n
			s.RatePerSecond = float64(recent) / 60
		case "deferred":
			s.Deferred += n
		case "failed":
			s.Failed += n
		case "cancelled":
			s.Cancelled += n
		case "suppressed":
			s.Suppressed[reason] += n
		}
		return nil
	})
	if err != nil {
		return Stats{}, fmt.Errorf("campaign stats: %w", err)
	}
	var suppressed int64
	for _, n := range s.Suppressed {
		suppressed += n
	}
	final := s.Sent + s.Failed + s.Cancelled + suppressed
	switch {
	case c.Status == StatusSent:
		s.Progress = 1
	case c.AudienceSize > 0:
		s.Progress = float64(final) / float64(c.AudienceSize)
	}
	if open := s.Queued + s.Sending + s.Deferred; c.FanoutDone && s.RatePerSecond > 0 && c.Status == StatusSending {
		eta := float64(open) / s.RatePerSecond
		s.ETASeconds = &eta
	}
	return s, nil
}
