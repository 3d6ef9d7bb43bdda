package mailer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"herald/consent"
	"herald/internal/db"
	"herald/templates"
)

// QueueTransactional is the River queue of transactional sends, kept apart from campaign traffic so
// that a large campaign never delays a password reset.
const QueueTransactional = "transactional"

// QueueMarketing is the River queue of marketing sends.
const QueueMarketing = "marketing"

// SendArgs is the River job that delivers one message.
type SendArgs struct {
	MessageID string `json:"message_id"`
	// Marketing sends hold their consent decision in a transaction until the hand-off is recorded.
	Marketing bool `json:"marketing,omitempty"`
	// Attachments says the message has rows in message_attachments (attachments.go), so only
	// such sends read that table.
	Attachments bool `json:"attachments,omitempty"`
}

// Kind is the job kind stored in river_job.
func (SendArgs) Kind() string { return "mailer.send" }

// SendWorker delivers messages: decide, mark sending, hand to SMTP, record the outcome.
type SendWorker struct {
	river.WorkerDefaults[SendArgs]
	DB        *pgxpool.Pool
	Consent   *consent.Service
	Relay     Transport
	Metrics   *Metrics
	Logger    *slog.Logger
	RetryBase time.Duration // first retry delay; doubled per attempt
	RetryMax  time.Duration // cap on the retry delay
	// SMTPTimeout bounds one delivery; the job's timeout is derived from it.
	SMTPTimeout time.Duration
	// BaseURL is the public https origin of the unsubscribe pages (https://BASE/u/TOKEN).
	BaseURL string
	// InboundDomain receives unsubscribe+TOKEN@ mail and is the domain part of List-Id.
	InboundDomain string
	// DKIM signs messages whose From domain has a key; nil signs nothing.
	DKIM *DKIM
	// ReturnPath, if set, gives a message's envelope sender from its workspace and seq: a VERP
	// address naming the message, so that a bounce is matched to it (tracking.VERP).
	ReturnPath func(workspaceID, seq int64) string

	lists listCache

	// decide replaces Consent.Decide in benchmarks that measure what the decision costs.
	decide func(context.Context, db.Querier, consent.Request) (consent.Decision, error)
}

// NextRetry backs off exponentially from RetryBase, capped at RetryMax, with ±10% jitter so
// that messages deferred together do not all return together.
func (w *SendWorker) NextRetry(job *river.Job[SendArgs]) time.Time {
	d := w.RetryBase
	for i := 1; i < job.Attempt && d < w.RetryMax; i++ {
		d *= 2
	}
	d = min(d, w.RetryMax)
	jitter := time.Duration(float64(d) * (rand.Float64()*0.2 - 0.1))
	return time.Now().Add(d + jitter)
}

// Timeout lets a delivery use the relay's dial, command and data timeouts with room to record.
func (w *SendWorker) Timeout(*river.Job[SendArgs]) time.Duration {
	return 3*w.SMTPTimeout + 30*time.Second
}

// Work delivers one message. The message is claimed by a conditional update that refuses final
// statuses, and River runs a job on one worker at a time, so a message already sent, failed or
// suppressed is never sent again, whatever River retries or rescues.
func (w *SendWorker) Work(ctx context.Context, job *river.Job[SendArgs]) error {
	if job.Args.Marketing {
		return w.workMarketing(ctx, job)
	}
	m, proceed, err := w.prepare(ctx, w.DB, job)
	if err != nil || !proceed {
		return err
	}
	if job.Args.Attachments {
		if m.Attachments, err = attachmentsGet(ctx, w.DB, m.ID); err != nil {
			return fmt.Errorf("send %s: %w", m.ID, err)
		}
	}
	res, sendErr := w.deliver(ctx, w.DB, &m)
	// Once the relay has answered, the answer must be recorded even if we are shutting down:
	// losing a "sent" would send the message again.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	return w.record(rctx, w.DB, job, &m, res, sendErr)
}

// workMarketing delivers a marketing message inside one transaction: claim, consent decision
// (which locks the contact's consent state for the purpose FOR SHARE), SMTP hand-off, outcome.
// A withdrawal of that consent therefore either commits before the decision, which then sees it,
// or waits until the hand-off is recorded: no marketing email leaves after a committed withdrawal.
// If the process dies after the relay accepted but before the commit, the job runs again and the
// message goes out a second time with the same Message-ID (the only duplicate possible).
func (w *SendWorker) workMarketing(ctx context.Context, job *river.Job[SendArgs]) error {
	tx, err := w.DB.Begin(ctx)
	if err != nil {
		return fmt.Errorf("send %s: begin: %w", job.Args.MessageID, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit it is a no-op
	m, proceed, err := w.prepare(ctx, tx, job)
	if err != nil {
		return err
	}
	if !proceed {
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("send %s: commit: %w", job.Args.MessageID, err)
		}
		return nil
	}
	res, sendErr := w.deliver(ctx, tx, &m)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	retryErr := w.record(rctx, tx, job, &m, res, sendErr)
	if err := tx.Commit(rctx); err != nil {
		w.Logger.ErrorContext(ctx, "outcome not recorded; the message may be sent again with the same Message-ID",
			"message_id", m.ID, "err", err)
		return fmt.Errorf("send %s: commit outcome: %w", m.ID, err)
	}
	return retryErr
}

// deliver composes m and hands it to the relay, timing the hand-off. A marketing message's list
// headers are read on q, the transaction holding its consent decision.
func (w *SendWorker) deliver(ctx context.Context, q db.Querier, m *Message) (SendResult, error) {
	o := composeOpts{DKIM: w.DKIM, Logger: w.Logger}
	if m.Stream == StreamMarketing {
		list, err := w.listInfo(ctx, q, m)
		if err != nil {
			// Missing configuration or a database error: worth retrying, never a reason to send
			// marketing mail without its unsubscribe headers.
			return SendResult{Reply: err.Error(), Temporary: true}, err
		}
		o.List = list
	}
	w.fillLinks(m, o.List)
	if w.ReturnPath != nil && m.Seq != 0 {
		m.ReturnPath = w.ReturnPath(m.WorkspaceID, m.Seq)
	}
	msg, err := compose(m, o)
	if err != nil {
		return SendResult{Reply: err.Error()}, err
	}
	start := time.Now()
	res, sendErr := w.Relay.Send(ctx, msg)
	outcome := "ok"
	if sendErr != nil {
		outcome = "permanent"
		if res.Temporary {
			outcome = "temporary"
		}
	}
	w.Metrics.SendDuration.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
	return res, sendErr
}

// fillLinks replaces the link placeholders a stored template may have printed (templates'
// unsubscribe_url, preferences_url, view_online_url, postal_address) with m's real links: the
// marketing message's personal unsubscribe link, or for a transactional message to a contact the
// link to its preference centre. Without a contact there is no link to give, and the
// placeholders are dropped rather than sent.
func (w *SendWorker) fillLinks(m *Message, list *listInfo) {
	var link string
	switch {
	case list != nil:
		link = list.URL
	case m.ContactID != nil && oneClickBase(w.BaseURL):
		link = consent.UnsubscribeURL(w.BaseURL, w.Consent.Keys.Token(consent.Recipient{WorkspaceID: m.WorkspaceID, ContactID: *m.ContactID}))
	}
	r := templates.Rendered{Subject: m.Subject, HTML: m.HTML, Text: m.Text}.
		WithLinks(templates.Links{Unsubscribe: link, Preferences: link, ViewOnline: link})
	m.Subject, m.HTML, m.Text = r.Subject, r.HTML, r.Text
}

// dbtx is a pool or a transaction: what prepare and record run on.
type dbtx interface {
	db.Querier
	Begin(ctx context.Context) (pgx.Tx, error)
}

// prepare marks the message sending, asks the consent decision and records a refusal. proceed is
// false when there is nothing to send: the message is gone, final already, or suppressed now. For
// transactional mail q is the pool and each step is one statement: a final message is never moved
// back, so a duplicate or rescued job cannot send it again. For marketing q is the transaction
// held until the outcome is recorded.
func (w *SendWorker) prepare(ctx context.Context, q dbtx, job *river.Job[SendArgs]) (m Message, proceed bool, err error) {
	m, ok, err := messageMarkSending(ctx, q, job.Args.MessageID, job.Attempt)
	if err != nil || !ok {
		return m, false, err
	}
	// Decide reads the suppression list (and, for marketing, the ledger) now, after the message
	// is claimed and immediately before the hand-off: a later change cannot be missed by an
	// earlier read.
	decide := w.Consent.Decide
	if w.decide != nil {
		decide = w.decide
	}
	d, err := decide(ctx, q, consent.Request{
		WorkspaceID: m.WorkspaceID, ContactID: m.ContactID, Address: m.To, Stream: m.Stream, Purpose: m.Purpose,
	})
	if err != nil {
		return m, false, fmt.Errorf("prepare send %s: %w", m.ID, err)
	}
	if !d.Allowed {
		if err := MessageSetStatus(ctx, q, &m, Event{Status: StatusSuppressed, Attempt: job.Attempt, Detail: d.Reason}); err != nil {
			return m, false, fmt.Errorf("prepare send %s: %w", m.ID, err)
		}
		w.Metrics.Messages.WithLabelValues(m.Stream, StatusSuppressed).Inc()
		w.Logger.InfoContext(ctx, "message suppressed", "message_id", m.ID, "workspace_id", m.WorkspaceID, "reason", d.Reason)
		return m, false, nil
	}
	return m, true, nil
}

var enhancedRE = regexp.MustCompile(`\b[245]\.\d{1,3}\.\d{1,3}\b`)

// record stores the relay's answer. It returns an error only to make River retry (4xx or no reply).
func (w *SendWorker) record(ctx context.Context, q dbtx, job *river.Job[SendArgs], m *Message, res SendResult, sendErr error) error {
	if res.Enhanced == "" {
		res.Enhanced = enhancedRE.FindString(res.Reply)
	}
	ev := Event{Attempt: job.Attempt, EnhancedCode: res.Enhanced, Detail: res.Reply}
	if res.Code != 0 {
		ev.SMTPCode = &res.Code
	}
	retry, snooze := false, false
	switch {
	case sendErr == nil:
		ev.Status = StatusSent
	case errors.Is(sendErr, ErrNoRelay):
		// No relay took the message: an outage of Herald's side, not the message's fault, so it
		// waits without using up an attempt (River's snooze), however long the outage lasts.
		ev.Status, snooze = StatusDeferred, true
	case res.Temporary && job.Attempt < job.MaxAttempts:
		ev.Status, retry = StatusDeferred, true
	case res.Temporary:
		ev.Status = StatusFailed
		ev.Detail = fmt.Sprintf("gave up after %d attempts: %s", job.Attempt, res.Reply)
	default:
		ev.Status = StatusFailed
	}
	hardBounce := ev.Status == StatusFailed && !res.Temporary && strings.HasPrefix(res.Enhanced, "5.1.")
	// The outcome is recorded before River completes the job: should the process die between the
	// two, the job runs again, finds the message final, and sends nothing.
	var err error
	if hardBounce {
		err = pgx.BeginFunc(ctx, q, func(tx pgx.Tx) error {
			if err := MessageSetStatus(ctx, tx, m, ev); err != nil {
				return err
			}
			_, err := w.Consent.Suppress(ctx, tx, consent.Suppression{
				WorkspaceID: m.WorkspaceID, Address: m.To, Reason: consent.ReasonHardBounce,
				Detail: res.Reply, MessageID: &m.ID,
			})
			return err
		})
	} else {
		err = MessageSetStatus(ctx, q, m, ev)
	}
	if err != nil {
		return fmt.Errorf("record outcome of %s: %w", m.ID, err)
	}
	w.Metrics.Messages.WithLabelValues(m.Stream, ev.Status).Inc()
	w.Logger.InfoContext(ctx, "delivery", "message_id", m.ID, "workspace_id", m.WorkspaceID, "status", ev.Status,
		"attempt", job.Attempt, "smtp_code", res.Code, "enhanced", res.Enhanced, "hard_bounce", hardBounce)
	if snooze {
		return river.JobSnooze(w.noRelayWait())
	}
	if retry {
		return fmt.Errorf("relay deferred message %s: %s", m.ID, res.Reply)
	}
	return nil
}

// noRelayWait is how long a message waits when no relay is available: the first retry delay,
// capped at 30 s so that mail flows again soon after a relay comes back.
func (w *SendWorker) noRelayWait() time.Duration {
	if w.RetryBase <= 0 {
		return time.Second
	}
	return min(w.RetryBase, 30*time.Second)
}
