package campaigns

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"herald/consent"
	"herald/internal/db"
	"herald/internal/httpx"
	"herald/templates"
)

// Campaign states (see the package doc for the transitions).
const (
	StatusDraft     = "draft"
	StatusScheduled = "scheduled"
	StatusSending   = "sending"
	StatusPaused    = "paused"
	StatusSent      = "sent"
	StatusCancelled = "cancelled"
)

// Throttle limits a campaign's sending: messages per second overall (applied by spacing the
// send times of its batches) and per recipient domain (applied by the batch send worker). Zero
// means no limit.
type Throttle struct {
	PerSecond int `json:"per_second"`
	PerDomain int `json:"per_domain"`
}

// maxRate bounds both throttle settings: above it a limit means nothing on one machine.
const maxRate = 100_000

// Campaign is one marketing campaign of a workspace.
type Campaign struct {
	ID              int64    `json:"id"`
	WorkspaceID     int64    `json:"-"`
	Name            string   `json:"name"`
	Purpose         string   `json:"purpose"`
	Template        string   `json:"template"`
	TemplateVersion int      `json:"template_version"`
	SenderID        int64    `json:"-"`
	Sender          string   `json:"sender"`
	Audience        Audience `json:"audience"`
	Schedule        Schedule `json:"schedule"`
	Throttle        Throttle `json:"throttle"`
	Status          string   `json:"status"`
	// Fan-out progress: the last contact id whose page is committed, whether the audience is
	// exhausted, when the last page was committed, and the recipients written so far.
	FanoutAfter  int64      `json:"-"`
	FanoutDone   bool       `json:"fanout_done"`
	FanoutAt     *time.Time `json:"-"`
	AudienceSize int64      `json:"audience_size"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
	ScheduledAt  *time.Time `json:"scheduled_at"`
	StartedAt    *time.Time `json:"started_at"`
	FinishedAt   *time.Time `json:"finished_at"`
}

// CampaignInput is a campaign's content as the API sends it. On create, name, purpose, template,
// sender and audience are required; on update, absent fields keep their value. A template
// without a version takes the latest version at that moment, which then stays fixed.
type CampaignInput struct {
	Name            *string   `json:"name"`
	Purpose         *string   `json:"purpose"`
	Template        *string   `json:"template"`
	TemplateVersion *int      `json:"template_version"`
	Sender          *string   `json:"sender"`
	Audience        *Audience `json:"audience"`
	Schedule        *Schedule `json:"schedule"`
	Throttle        *Throttle `json:"throttle"`
}

const campaignColumns = `c.id, c.workspace_id, c.name, c.purpose, c.template_name, c.template_version, c.sender_id,
	s.name, c.audience, c.schedule_kind, c.send_at, coalesce(c.local_date::text, ''),
	coalesce(to_char(c.local_time, 'HH24:MI'), ''), c.fallback_timezone, c.rate_per_second, c.domain_rate,
	c.status, c.fanout_after, c.fanout_done, c.fanout_at, c.audience_size, c.created_at, c.updated_at,
	c.scheduled_at, c.started_at, c.finished_at`

const campaignFrom = ` FROM campaigns c JOIN senders s ON s.id = c.sender_id `

func scanCampaign(row pgx.Row) (Campaign, error) {
	var c Campaign
	err := row.Scan(&c.ID, &c.WorkspaceID, &c.Name, &c.Purpose, &c.Template, &c.TemplateVersion, &c.SenderID,
		&c.Sender, &c.Audience, &c.Schedule.Kind, &c.Schedule.At, &c.Schedule.LocalDate, &c.Schedule.LocalTime,
		&c.Schedule.FallbackTimezone, &c.Throttle.PerSecond, &c.Throttle.PerDomain, &c.Status, &c.FanoutAfter,
		&c.FanoutDone, &c.FanoutAt, &c.AudienceSize, &c.CreatedAt, &c.UpdatedAt, &c.ScheduledAt, &c.StartedAt,
		&c.FinishedAt)
	return c, err
}

// Load returns a campaign by id, whatever its workspace: for workers, whose jobs name only the
// campaign. It returns an error wrapping db.ErrNotFound when there is none.
func Load(ctx context.Context, q db.Querier, id int64) (Campaign, error) {
	c, err := scanCampaign(q.QueryRow(ctx, `SELECT `+campaignColumns+campaignFrom+`WHERE c.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("load campaign %d: %w", id, db.ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("load campaign %d: %w", id, err)
	}
	return c, nil
}

// CampaignGet returns the workspace's campaign, or an error wrapping db.ErrNotFound (also for
// another workspace's campaign).
func CampaignGet(ctx context.Context, q db.Querier, workspaceID, id int64) (Campaign, error) {
	return getCampaign(ctx, q, workspaceID, id, "")
}

// lockCampaign is CampaignGet locking the row FOR UPDATE in tx: every state change and every
// fan-out page takes this lock, so they apply one after the other.
func lockCampaign(ctx context.Context, tx pgx.Tx, workspaceID, id int64) (Campaign, error) {
	return getCampaign(ctx, tx, workspaceID, id, " FOR UPDATE OF c")
}

func getCampaign(ctx context.Context, q db.Querier, workspaceID, id int64, suffix string) (Campaign, error) {
	c, err := scanCampaign(q.QueryRow(ctx, `SELECT `+campaignColumns+campaignFrom+
		`WHERE c.workspace_id = $1 AND c.id = $2`+suffix, workspaceID, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("get campaign: %w", db.ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("get campaign: %w", err)
	}
	return c, nil
}

// CampaignList returns up to limit of the workspace's campaigns, newest first, with ids below
// before (0: from the newest).
func CampaignList(ctx context.Context, q db.Querier, workspaceID, before int64, limit int) ([]Campaign, error) {
	rows, err := q.Query(ctx, `SELECT `+campaignColumns+campaignFrom+
		`WHERE c.workspace_id = $1 AND ($2 = 0 OR c.id < $2) ORDER BY c.id DESC LIMIT $3`, workspaceID, before, limit)
	if err != nil {
		return nil, fmt.Errorf("list campaigns: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Campaign, error) { return scanCampaign(r) })
	if err != nil {
		return nil, fmt.Errorf("list campaigns: %w", err)
	}
	return out, nil
}

// apply copies the fields in holds onto c. A new template without a version resets it to the
// latest.
func (in CampaignInput) apply(c *Campaign) {
	if in.Name != nil {
		c.Name = *in.Name
	}
	if in.Purpose != nil {
		c.Purpose = *in.Purpose
	}
	if in.Template != nil && *in.Template != c.Template {
		c.Template, c.TemplateVersion = *in.Template, 0
	}
	if in.TemplateVersion != nil {
		c.TemplateVersion = *in.TemplateVersion
	}
	if in.Sender != nil {
		c.Sender = *in.Sender
	}
	if in.Audience != nil {
		c.Audience = *in.Audience
	}
	if in.Schedule != nil {
		c.Schedule = *in.Schedule
	}
	if in.Throttle != nil {
		c.Throttle = *in.Throttle
	}
}

// check validates c's content against the workspace at now: every reference must exist (the
// template version is resolved, the sender's id filled in) and the schedule must lie ahead.
// Faults are 422 problems naming the field.
func (c *Campaign) check(ctx context.Context, q db.Querier, now time.Time) error {
	c.Name = strings.TrimSpace(c.Name)
	if c.Name == "" || !printableLine(c.Name, 200) || strings.ContainsAny(c.Name, "<>") {
		return httpx.Invalid("name", "must be 1-200 printable characters on one line, without < or >")
	}
	if !consent.PurposeNameRE.MatchString(c.Purpose) {
		return httpx.Invalid("purpose", "must be the name of one of the workspace's consent purposes")
	}
	if pu, err := consent.PurposeGet(ctx, q, c.WorkspaceID, c.Purpose); errors.Is(err, db.ErrNotFound) {
		return httpx.Invalid("purpose", "no consent purpose named "+c.Purpose)
	} else if err != nil {
		return err
	} else if pu.Kind != consent.PurposeMarketing {
		return httpx.Invalid("purpose", c.Purpose+" is the open and click tracking purpose, not a marketing purpose: "+
			"campaigns are sent for a marketing purpose")
	}
	if templates.ValidName(c.Template) != nil {
		return httpx.Invalid("template", "must be the name of one of the workspace's templates")
	}
	if c.TemplateVersion < 0 {
		return httpx.Invalid("template_version", "must be a version number (1, 2, ...)")
	}
	t, err := templates.Get(ctx, q, c.WorkspaceID, c.Template, c.TemplateVersion)
	if errors.Is(err, db.ErrNotFound) {
		if c.TemplateVersion == 0 {
			return httpx.Invalid("template", "no template named "+c.Template)
		}
		return httpx.Invalid("template_version", fmt.Sprintf("template %s has no version %d", c.Template, c.TemplateVersion))
	} else if err != nil {
		return err
	}
	c.TemplateVersion = t.Version
	if !senderNameRE.MatchString(c.Sender) {
		return httpx.Invalid("sender", "must be the name of one of the workspace's senders")
	}
	s, err := SenderGet(ctx, q, c.WorkspaceID, c.Sender)
	if errors.Is(err, db.ErrNotFound) {
		return httpx.Invalid("sender", "no sender named "+c.Sender)
	} else if err != nil {
		return err
	}
	c.SenderID = s.ID
	if err := c.Audience.Validate(ctx, q, c.WorkspaceID); err != nil {
		return audienceProblem(err)
	}
	if c.Schedule, err = c.Schedule.normalize(); err != nil {
		return err
	}
	if err := c.Schedule.checkFuture(now); err != nil {
		return err
	}
	if c.Throttle.PerSecond < 0 || c.Throttle.PerSecond > maxRate {
		return httpx.Invalid("throttle.per_second", fmt.Sprintf("must be from 0 (no limit) to %d", maxRate))
	}
	if c.Throttle.PerDomain < 0 || c.Throttle.PerDomain > maxRate {
		return httpx.Invalid("throttle.per_domain", fmt.Sprintf("must be from 0 (no limit) to %d", maxRate))
	}
	return nil
}

// audienceProblem names an audience fault under "audience." (the audience is a nested object).
func audienceProblem(err error) error {
	var p *httpx.Problem
	if errors.As(err, &p) && p.Field != "" {
		q := *p
		q.Field = "audience." + p.Field
		q.Detail = "audience." + p.Detail
		return &q
	}
	return err
}

// CampaignCreate validates in and stores it as a draft of the workspace.
func CampaignCreate(ctx context.Context, q db.Querier, workspaceID int64, in CampaignInput, now time.Time) (Campaign, error) {
	for _, f := range []struct {
		name    string
		present bool
	}{{"name", in.Name != nil}, {"purpose", in.Purpose != nil}, {"template", in.Template != nil},
		{"sender", in.Sender != nil}, {"audience", in.Audience != nil}} {
		if !f.present {
			return Campaign{}, httpx.Invalid(f.name, "is required")
		}
	}
	c := Campaign{WorkspaceID: workspaceID, Status: StatusDraft}
	in.apply(&c)
	if err := c.check(ctx, q, now); err != nil {
		return Campaign{}, err
	}
	err := q.QueryRow(ctx, `
		INSERT INTO campaigns (workspace_id, name, purpose, template_name, template_version, sender_id, audience,
			schedule_kind, send_at, local_date, local_time, fallback_timezone, rate_per_second, domain_rate)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, nullif($10, '')::date, nullif($11, '')::time, $12, $13, $14)
		RETURNING id, created_at, updated_at`,
		workspaceID, c.Name, c.Purpose, c.Template, c.TemplateVersion, c.SenderID, c.Audience, c.Schedule.Kind,
		c.Schedule.At, c.Schedule.LocalDate, c.Schedule.LocalTime, c.Schedule.FallbackTimezone,
		c.Throttle.PerSecond, c.Throttle.PerDomain).Scan(&c.ID, &c.CreatedAt, &c.UpdatedAt)
	if err != nil {
		return Campaign{}, fmt.Errorf("create campaign: %w", err)
	}
	return c, nil
}

// CampaignUpdate changes a draft's content in tx. A campaign past draft is frozen: a *StateError.
func CampaignUpdate(ctx context.Context, tx pgx.Tx, workspaceID, id int64, in CampaignInput, now time.Time) (Campaign, error) {
	c, err := lockCampaign(ctx, tx, workspaceID, id)
	if err != nil {
		return c, err
	}
	if c.Status != StatusDraft {
		return c, &StateError{Action: "update", Status: c.Status}
	}
	in.apply(&c)
	if err := c.check(ctx, tx, now); err != nil {
		return Campaign{}, err
	}
	err = tx.QueryRow(ctx, `
		UPDATE campaigns SET name = $3, purpose = $4, template_name = $5, template_version = $6, sender_id = $7,
			audience = $8, schedule_kind = $9, send_at = $10, local_date = nullif($11, '')::date,
			local_time = nullif($12, '')::time, fallback_timezone = $13, rate_per_second = $14, domain_rate = $15,
			updated_at = now()
		WHERE workspace_id = $1 AND id = $2
		RETURNING updated_at`,
		workspaceID, id, c.Name, c.Purpose, c.Template, c.TemplateVersion, c.SenderID, c.Audience, c.Schedule.Kind,
		c.Schedule.At, c.Schedule.LocalDate, c.Schedule.LocalTime, c.Schedule.FallbackTimezone,
		c.Throttle.PerSecond, c.Throttle.PerDomain).Scan(&c.UpdatedAt)
	if err != nil {
		return Campaign{}, fmt.Errorf("update campaign: %w", err)
	}
	return c, nil
}

// marketingProblem turns templates.CheckMarketing's verdict into a 422 that says what the
// template lacks.
func marketingProblem(c *Campaign, err error) error {
	var pe *templates.PartError
	if !errors.As(err, &pe) {
		return httpx.Invalid("template", fmt.Sprintf("version %d does not compile: %v", c.TemplateVersion, err))
	}
	msg := pe.Err.Error()
	var lacks []string
	if strings.Contains(msg, "unsubscribe link") {
		lacks = append(lacks, "the unsubscribe link")
	}
	if strings.Contains(msg, "postal address") {
		lacks = append(lacks, "the postal address")
	}
	if len(lacks) == 0 {
		return httpx.Invalid("template", fmt.Sprintf("version %d, %s part: %s", c.TemplateVersion, pe.Part, msg))
	}
	return httpx.Invalid("template", fmt.Sprintf("the template lacks %s (version %d, %s part): %s",
		strings.Join(lacks, " and "), c.TemplateVersion, pe.Part, msg))
}

// StateError is a state change the campaign's current state does not allow (answered 409).
type StateError struct {
	Action string // schedule, pause, resume, cancel, update
	Status string // the campaign's current state
}

func (e *StateError) Error() string {
	if e.Action == "update" {
		return fmt.Sprintf("the campaign is %s: its content is frozen once it is scheduled", e.Status)
	}
	return fmt.Sprintf("cannot %s a campaign that is %s", e.Action, e.Status)
}

// transitionsFrom lists, per action, the states it applies to.
var transitionsFrom = map[string][]string{
	"schedule": {StatusDraft},
	"pause":    {StatusScheduled, StatusSending},
	"resume":   {StatusPaused},
	"cancel":   {StatusDraft, StatusScheduled, StatusSending, StatusPaused},
}

// Inserter inserts River jobs in a transaction; *river.Client[pgx.Tx] is one.
type Inserter interface {
	InsertTx(ctx context.Context, tx pgx.Tx, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
}

// Transition applies action (schedule, pause, resume or cancel) to the workspace's campaign in tx,
// with the jobs it needs inserted in the same transaction, and returns the campaign as changed:
//
//   - schedule (draft → scheduled) validates everything again, including that the template
//     version is a marketing template, and inserts the FanOutArgs job at the send time;
//   - pause (scheduled or sending → paused) stops the fan-out and the batches at their next step;
//   - resume (paused → scheduled when the fan-out had not started, else sending) inserts a
//     FanOutArgs job (the paused fan-out job has ended) when the fan-out is not done, and a
//     RequeueArgs job for the recipients whose batch jobs ended while paused;
//   - cancel (any state but sent and cancelled → cancelled) inserts a SweepArgs job that marks the
//     open recipients cancelled.
//
// An action the current state does not allow is a *StateError.
func Transition(ctx context.Context, tx pgx.Tx, jobs Inserter, workspaceID, id int64, action string, now time.Time) (Campaign, error) {
	from, known := transitionsFrom[action]
	if !known {
		return Campaign{}, fmt.Errorf("campaign transition: unknown action %q", action)
	}
	c, err := lockCampaign(ctx, tx, workspaceID, id)
	if err != nil {
		return c, err
	}
	if !slices.Contains(from, c.Status) {
		return c, &StateError{Action: action, Status: c.Status}
	}
	now = now.UTC().Truncate(time.Microsecond)
	var insert []river.InsertManyParams
	switch action {
	case "schedule":
		if err := c.check(ctx, tx, now); err != nil {
			return Campaign{}, err
		}
		t, err := templates.Get(ctx, tx, workspaceID, c.Template, c.TemplateVersion)
		if err != nil {
			return Campaign{}, fmt.Errorf("schedule campaign: %w", err)
		}
		if err := templates.CheckMarketing(t); err != nil {
			return Campaign{}, marketingProblem(&c, err)
		}
		c.Status, c.ScheduledAt = StatusScheduled, &now
		insert = append(insert, fanOutJob(c.ID, c.SendTime()))
	case "pause":
		c.Status = StatusPaused
	case "resume":
		if c.StartedAt == nil {
			c.Status = StatusScheduled
			insert = append(insert, fanOutJob(c.ID, c.SendTime()))
		} else {
			c.Status = StatusSending
			if !c.FanoutDone {
				insert = append(insert, fanOutJob(c.ID, time.Time{}))
			}
			insert = append(insert, river.InsertManyParams{Args: RequeueArgs{CampaignID: c.ID},
				InsertOpts: &river.InsertOpts{Queue: QueueCampaigns}})
		}
	case "cancel":
		c.Status, c.FinishedAt = StatusCancelled, &now
		if c.StartedAt != nil {
			insert = append(insert, river.InsertManyParams{Args: SweepArgs{CampaignID: c.ID},
				InsertOpts: &river.InsertOpts{Queue: QueueCampaigns, UniqueOpts: pendingUnique()}})
		}
	}
	// fanout_at restarts the sweeper's staleness clock: a resumed fan-out has two minutes to begin.
	err = tx.QueryRow(ctx, `UPDATE campaigns SET status = $2, scheduled_at = $3, finished_at = $4,
			fanout_at = CASE WHEN $2 = 'sending' THEN $5 ELSE fanout_at END, updated_at = $5
		WHERE id = $1 RETURNING updated_at`, c.ID, c.Status, c.ScheduledAt, c.FinishedAt, now).Scan(&c.UpdatedAt)
	if err != nil {
		return Campaign{}, fmt.Errorf("%s campaign: %w", action, err)
	}
	for _, p := range insert {
		if _, err := jobs.InsertTx(ctx, tx, p.Args, p.InsertOpts); err != nil {
			return Campaign{}, fmt.Errorf("%s campaign: insert %s job: %w", action, p.Args.Kind(), err)
		}
	}
	return c, nil
}

// fanOutJob is a FanOutArgs job at the given time (zero: now).
func fanOutJob(id int64, at time.Time) river.InsertManyParams {
	return river.InsertManyParams{Args: FanOutArgs{CampaignID: id},
		InsertOpts: &river.InsertOpts{Queue: QueueCampaigns, ScheduledAt: at}}
}

// pendingUnique makes a job unique by its args among jobs not yet finished: a second copy is not
// inserted while one waits or runs, and a finished one does not block the next (River's default
// states include completed, which would block it until the job cleaner runs).
func pendingUnique() river.UniqueOpts {
	return river.UniqueOpts{ByArgs: true, ByState: []rivertype.JobState{
		rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning,
		rivertype.JobStateRetryable, rivertype.JobStateScheduled,
	}}
}
