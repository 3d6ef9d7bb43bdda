package campaigns

import (
	"context"
	"fmt"
	"math"
	"slices"
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

	Engagement
}

// CampaignStats computes the workspace's campaign's stats: progress from one GROUP BY over its
// recipients (a scan of the campaign's rows: about a quarter of a second per million on two
// cores), then its engagement (Engagement.load, five more queries). A campaign of another
// workspace is db.ErrNotFound.
//
// When q can begin a transaction (a pool, or a transaction: then a savepoint), the queries run
// in one with statsSettings: their hash aggregates hold a row per recipient who opened or
// clicked, which at the default work_mem spill to disk from some 50,000 of them, and JIT
// compilation costs more than it saves on these plans.
func CampaignStats(ctx context.Context, q db.Querier, workspaceID, id int64, now time.Time) (Stats, error) {
	b, ok := q.(interface {
		Begin(context.Context) (pgx.Tx, error)
	})
	if !ok {
		return campaignStats(ctx, q, workspaceID, id, now)
	}
	var s Stats
	err := pgx.BeginFunc(ctx, b, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, statsSettings); err != nil {
			return fmt.Errorf("campaign stats: %w", err)
		}
		var err error
		s, err = campaignStats(ctx, tx, workspaceID, id, now)
		return err
	})
	return s, err
}

// statsSettings apply to the stats transaction only.
const statsSettings = `SET LOCAL work_mem = '64MB'; SET LOCAL jit = off`

func campaignStats(ctx context.Context, q db.Querier, workspaceID, id int64, now time.Time) (Stats, error) {
	c, err := CampaignGet(ctx, q, workspaceID, id)
	if err != nil {
		return Stats{}, err
	}
	s := Stats{Status: c.Status, AudienceSize: c.AudienceSize, FanoutDone: c.FanoutDone, Suppressed: map[string]int64{}}
	rows, err := q.Query(ctx, `
		SELECT status, CASE WHEN status = 'suppressed' THEN reason ELSE '' END, count(*),
			count(*) FILTER (WHERE status = 'sent' AND sent_at > $2),
			count(*) FILTER (WHERE status = 'failed' AND (`+handOffHardBounce+`))
		FROM campaign_recipients WHERE campaign_id = $1
		GROUP BY 1, 2`, c.ID, now.Add(-time.Minute))
	if err != nil {
		return Stats{}, fmt.Errorf("campaign stats: %w", err)
	}
	var status, reason string
	var n, recent, hard int64
	_, err = pgx.ForEachRow(rows, []any{&status, &reason, &n, &recent, &hard}, func() error {
		s.Bounces.HardAtHandOff += hard
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
	if err := s.Engagement.load(ctx, q, c, s.Sent, s.Failed); err != nil {
		return Stats{}, fmt.Errorf("campaign stats: %w", err)
	}
	return s, nil
}

// handOffHardBounce is the condition on a failed campaign_recipients row that makes it a hard
// bounce at the SMTP hand-off: the send batch marks those reason hard_bounce (a 5.1.x enhanced
// status); older rows are recognised by a 5.1.x code in the reply.
const handOffHardBounce = `reason = 'hard_bounce' OR smtp_reply ~ '(^|[^0-9.])5\.1\.[0-9]{1,3}([^0-9]|$)'`

// Engagement is what recipients did with a campaign: opens and clicks (tracking_events), bounces
// and complaints (feedback_events and the hand-off), unsubscribes (the ledger and the suppression
// list), their rates, and an hourly series. Rates are percentages with two decimals, 0 when
// their denominator is 0.
type Engagement struct {
	// Delivered is Sent minus the sent recipients who bounced afterwards (a DSN or a provider's
	// bounce event, hard or soft).
	Delivered int64  `json:"delivered"`
	Opens     Counts `json:"opens"`
	Clicks    Clicks `json:"clicks"`
	// Unsubscribes counts the recipients whose unsubscribe is attributed to this campaign: see
	// unsubscribesSQL for the rule.
	Unsubscribes int64   `json:"unsubscribes"`
	Bounces      Bounces `json:"bounces"`
	// Complaints counts the recipients who reported the campaign as spam.
	Complaints int64 `json:"complaints"`
	Rates      Rates `json:"rates"`
	// Series is the activity per hour (UTC), oldest first; hours with none are left out.
	Series []HourStats `json:"series"`

	humanEngaged int64 // human recipients who opened or clicked: the click-to-open denominator
}

// Counts are event counts: Total events and Unique recipients, all together and split by who
// made them (Machine: proxy opens such as Apple Mail Privacy Protection, link scanners).
type Counts struct {
	Total   int64 `json:"total"`
	Unique  int64 `json:"unique"`
	Human   Split `json:"human"`
	Machine Split `json:"machine"`
}

// Split is the total and unique count of one kind of actor.
type Split struct {
	Total  int64 `json:"total"`
	Unique int64 `json:"unique"`
}

// Clicks are the campaign's clicks: Unique is the number of unique clickers (recipients who
// clicked any link), and Links the counts per tracked link, every link of the campaign listed.
type Clicks struct {
	Counts
	Links []LinkStats `json:"links"`
}

// LinkStats are the clicks of one tracked link (campaign_links).
type LinkStats struct {
	ID  int64  `json:"id"`
	URL string `json:"url"`
	Counts
}

// Bounces count the recipients that bounced: Hard includes HardAtHandOff, the recipients the
// relay refused at once with a 5.1.x status (failed, never sent); Soft counts those with a soft
// bounce report after sending.
type Bounces struct {
	Hard          int64 `json:"hard"`
	Soft          int64 `json:"soft"`
	HardAtHandOff int64 `json:"hard_at_hand_off"`
}

// Rates are percentages: Delivery = delivered / sent; Open = unique human openers / delivered;
// ClickThrough = unique human clickers / delivered; ClickToOpen = unique human clickers / unique
// human recipients who opened or clicked (a click proves an open whose pixel was blocked);
// Bounce = bounced recipients (hard, soft) / (sent + failed); Complaint and Unsubscribe =
// recipients / delivered.
type Rates struct {
	Delivery     float64 `json:"delivery"`
	Open         float64 `json:"open"`
	ClickThrough float64 `json:"click_through"`
	ClickToOpen  float64 `json:"click_to_open"`
	Bounce       float64 `json:"bounce"`
	Complaint    float64 `json:"complaint"`
	Unsubscribe  float64 `json:"unsubscribe"`
}

// HourStats is one hour of a campaign's life.
type HourStats struct {
	Hour          time.Time `json:"hour"`
	Sends         int64     `json:"sends"`
	OpensHuman    int64     `json:"opens_human"`
	OpensMachine  int64     `json:"opens_machine"`
	ClicksHuman   int64     `json:"clicks_human"`
	ClicksMachine int64     `json:"clicks_machine"`
	Bounces       int64     `json:"bounces"`
	Complaints    int64     `json:"complaints"`
	Unsubscribes  int64     `json:"unsubscribes"`
}

// trackingStatsSQL counts the campaign's opens and clicks from its tracking events
// (tracking_events_campaign_idx) with hash aggregates only (count(DISTINCT) would sort every
// event): per is one row per (kind, link, recipient) with its human and machine events, per_kind
// one per (kind, recipient). Rows: each link's clicks (link > 0), each kind's counts over all
// links (link -1), and the human recipients who opened or clicked (kind 'engaged'). Columns
// after the link: human total and unique, machine total and unique, unique recipients.
const trackingStatsSQL = `
	WITH per AS MATERIALIZED (
		SELECT kind = 'click' AS click, link_id, recipient_id,
			(count(*) FILTER (WHERE NOT machine))::int AS h, (count(*) FILTER (WHERE machine))::int AS m
		FROM tracking_events WHERE campaign_id = $1 AND workspace_id = $2
		GROUP BY 1, 2, 3
	), per_kind AS MATERIALIZED (
		SELECT click, recipient_id, sum(h)::int AS h, sum(m)::int AS m FROM per GROUP BY 1, 2
	)
	SELECT 'click', link_id, sum(h), count(*) FILTER (WHERE h > 0), sum(m), count(*) FILTER (WHERE m > 0), count(*)
	FROM per WHERE click GROUP BY link_id
	UNION ALL
	SELECT CASE WHEN click THEN 'click' ELSE 'open' END, -1, sum(h), count(*) FILTER (WHERE h > 0), sum(m),
		count(*) FILTER (WHERE m > 0), count(*)
	FROM per_kind GROUP BY click
	UNION ALL
	SELECT 'engaged', -1, 0, count(*), 0, 0, count(*)
	FROM (SELECT recipient_id FROM per_kind WHERE h > 0 GROUP BY recipient_id) e`

// feedbackStatsSQL counts the recipients of the campaign with each kind of feedback, and those
// that bounced at all.
const feedbackStatsSQL = `
	SELECT count(DISTINCT recipient_id) FILTER (WHERE kind = 'hard_bounce'),
		count(DISTINCT recipient_id) FILTER (WHERE kind = 'soft_bounce'),
		count(DISTINCT recipient_id) FILTER (WHERE kind = 'complaint'),
		count(DISTINCT recipient_id) FILTER (WHERE kind IN ('hard_bounce', 'soft_bounce'))
	FROM feedback_events WHERE campaign_id = $1 AND workspace_id = $2`

// unsubscribesSQL returns, per recipient of the campaign whose unsubscribe is attributed to it,
// the time of its first such unsubscribe. The rule: an unsubscribe is a withdrawal ledger event
// for the campaign's purpose (not one made by a spam complaint, which counts as a complaint), or
// an unsubscribed_all entry of the suppression list for the recipient's address; it counts for
// this campaign when it happened at or after the recipient's sent_at and no other campaign of the
// workspace reached the contact between that sent_at and the unsubscribe (for a withdrawal, no
// other campaign of the same purpose): the latest campaign received before it gets the credit.
// An unsubscribe lifted since (a re-subscription deletes the suppression entry) no longer
// counts through the suppression list, but its ledger withdrawal does.
//
// It starts from the unsubscribes (few) and finds their recipient rows by (campaign_id,
// contact_id), so the campaign's recipients are not scanned; the NOT EXISTS probes the same
// unique index for each other campaign of the workspace started before the unsubscribe.
const unsubscribesSQL = `
	WITH u AS (
		SELECT r.contact_id, r.sent_at, e.occurred_at AS at, true AS same_purpose
		FROM consent_events e JOIN campaign_recipients r ON r.campaign_id = $1 AND r.contact_id = e.contact_id
		WHERE e.workspace_id = $2 AND e.purpose = $3 AND e.action = 'withdrawn' AND e.source <> 'complaint'
			AND e.occurred_at >= $4 AND r.status = 'sent' AND e.occurred_at >= r.sent_at
		UNION ALL
		SELECT r.contact_id, r.sent_at, sp.created_at, false
		FROM suppressions sp
		JOIN contacts ct ON ct.workspace_id = $2 AND ct.email = sp.address
		JOIN campaign_recipients r ON r.campaign_id = $1 AND r.contact_id = ct.id
		WHERE sp.workspace_id = $2 AND sp.reason = 'unsubscribed_all' AND sp.created_at >= $4
			AND r.status = 'sent' AND sp.created_at >= r.sent_at
	)
	SELECT u.contact_id, min(u.at) FROM u
	WHERE NOT EXISTS (
		SELECT 1 FROM campaigns c2 JOIN campaign_recipients r2 ON r2.campaign_id = c2.id AND r2.contact_id = u.contact_id
		WHERE c2.workspace_id = $2 AND c2.id <> $1 AND (NOT u.same_purpose OR c2.purpose = $3)
			AND c2.started_at <= u.at AND r2.status = 'sent' AND r2.sent_at > u.sent_at AND r2.sent_at <= u.at)
	GROUP BY u.contact_id`

// seriesSQL counts the campaign's activity per hour; unsubscribes are added from unsubscribesSQL.
const seriesSQL = `
	SELECT date_trunc('hour', at), metric, count(*) FROM (
		SELECT CASE WHEN status = 'sent' THEN sent_at ELSE updated_at END AS at,
			CASE WHEN status = 'sent' THEN 'sends' ELSE 'bounces' END AS metric
		FROM campaign_recipients WHERE campaign_id = $1 AND (status = 'sent'
			OR (status = 'failed' AND updated_at IS NOT NULL AND (` + handOffHardBounce + `)))
		UNION ALL
		SELECT at, kind || CASE WHEN machine THEN '_machine' ELSE '_human' END
			FROM tracking_events WHERE campaign_id = $1 AND workspace_id = $2
		UNION ALL
		SELECT at, CASE WHEN kind = 'complaint' THEN 'complaints' ELSE 'bounces' END
			FROM feedback_events WHERE campaign_id = $1 AND workspace_id = $2
	) a
	GROUP BY 1, 2`

// load fills e for campaign c, whose sent and failed recipients the caller has counted.
func (e *Engagement) load(ctx context.Context, q db.Querier, c Campaign, sent, failed int64) error {
	if err := e.loadTracking(ctx, q, c); err != nil {
		return err
	}
	var hardFeedback, bounced int64
	err := q.QueryRow(ctx, feedbackStatsSQL, c.ID, c.WorkspaceID).Scan(&hardFeedback, &e.Bounces.Soft, &e.Complaints, &bounced)
	if err != nil {
		return fmt.Errorf("feedback counts: %w", err)
	}
	e.Bounces.Hard = hardFeedback + e.Bounces.HardAtHandOff
	e.Delivered = max(sent-bounced, 0)

	series := map[time.Time]*HourStats{}
	hour := func(t time.Time) *HourStats {
		t = t.UTC()
		h := series[t]
		if h == nil {
			h = &HourStats{Hour: t}
			series[t] = h
		}
		return h
	}
	started := time.Time{}
	if c.StartedAt != nil {
		started = *c.StartedAt
	}
	rows, err := q.Query(ctx, unsubscribesSQL, c.ID, c.WorkspaceID, c.Purpose, started)
	if err != nil {
		return fmt.Errorf("unsubscribes: %w", err)
	}
	var contactID int64
	var at time.Time
	_, err = pgx.ForEachRow(rows, []any{&contactID, &at}, func() error {
		e.Unsubscribes++
		hour(at.Truncate(time.Hour)).Unsubscribes++
		return nil
	})
	if err != nil {
		return fmt.Errorf("unsubscribes: %w", err)
	}

	rows, err = q.Query(ctx, seriesSQL, c.ID, c.WorkspaceID)
	if err != nil {
		return fmt.Errorf("hourly series: %w", err)
	}
	var metric string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&at, &metric, &n}, func() error {
		h := hour(at)
		switch metric {
		case "sends":
			h.Sends += n
		case "bounces":
			h.Bounces += n
		case "complaints":
			h.Complaints += n
		case "open_human":
			h.OpensHuman += n
		case "open_machine":
			h.OpensMachine += n
		case "click_human":
			h.ClicksHuman += n
		case "click_machine":
			h.ClicksMachine += n
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("hourly series: %w", err)
	}
	e.Series = make([]HourStats, 0, len(series))
	for _, h := range series {
		e.Series = append(e.Series, *h)
	}
	slices.SortFunc(e.Series, func(a, b HourStats) int { return a.Hour.Compare(b.Hour) })

	e.Rates = Rates{
		Delivery:     percent(e.Delivered, sent),
		Open:         percent(e.Opens.Human.Unique, e.Delivered),
		ClickThrough: percent(e.Clicks.Human.Unique, e.Delivered),
		ClickToOpen:  percent(e.Clicks.Human.Unique, e.humanEngaged),
		Bounce:       percent(bounced+e.Bounces.HardAtHandOff, sent+failed),
		Complaint:    percent(e.Complaints, e.Delivered),
		Unsubscribe:  percent(e.Unsubscribes, e.Delivered),
	}
	return nil
}

// loadTracking fills the opens and clicks from trackingStatsSQL and the campaign's links.
func (e *Engagement) loadTracking(ctx context.Context, q db.Querier, c Campaign) error {
	rows, err := q.Query(ctx, `SELECT id, url FROM campaign_links WHERE campaign_id = $1 ORDER BY id`, c.ID)
	if err != nil {
		return fmt.Errorf("campaign links: %w", err)
	}
	e.Clicks.Links, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (LinkStats, error) {
		var l LinkStats
		err := r.Scan(&l.ID, &l.URL)
		return l, err
	})
	if err != nil {
		return fmt.Errorf("campaign links: %w", err)
	}
	links := make(map[int64]*Counts, len(e.Clicks.Links))
	for i := range e.Clicks.Links {
		links[e.Clicks.Links[i].ID] = &e.Clicks.Links[i].Counts
	}
	rows, err = q.Query(ctx, trackingStatsSQL, c.ID, c.WorkspaceID)
	if err != nil {
		return fmt.Errorf("tracking counts: %w", err)
	}
	var kind string
	var linkID int64
	var human, machine Split
	var unique int64
	_, err = pgx.ForEachRow(rows, []any{&kind, &linkID, &human.Total, &human.Unique, &machine.Total, &machine.Unique, &unique}, func() error {
		var cs *Counts
		switch {
		case kind == "engaged":
			e.humanEngaged = human.Unique
			return nil
		case kind == "open" && linkID < 0:
			cs = &e.Opens
		case kind == "click" && linkID < 0:
			cs = &e.Clicks.Counts
		case kind == "click":
			if cs = links[linkID]; cs == nil {
				return nil // the link row is gone (cannot happen while the campaign exists)
			}
		default:
			return nil
		}
		*cs = Counts{Total: human.Total + machine.Total, Unique: unique, Human: human, Machine: machine}
		return nil
	})
	if err != nil {
		return fmt.Errorf("tracking counts: %w", err)
	}
	return nil
}

// percent is n/of as a percentage rounded to two decimals, 0 when of is 0.
func percent(n, of int64) float64 {
	if of <= 0 {
		return 0
	}
	return math.Round(float64(n)*10000/float64(of)) / 100
}
