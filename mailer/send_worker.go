package mailer

import (
	"context"
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
)

// QueueTransactional is the River queue of transactional sends, kept apart from campaign traffic so
// that a large campaign never delays a password reset.
const QueueTransactional = "transactional"

// SendArgs is the River job that delivers one message.
type SendArgs struct {
	MessageID string `json:"message_id"`
}

// Kind is the job kind stored in river_job.
func (SendArgs) Kind() string { return "mailer.send" }

// SendWorker delivers messages: decide, mark sending, hand to SMTP, record the outcome.
type SendWorker struct {
	river.WorkerDefaults[SendArgs]
	DB        *pgxpool.Pool
	Relay     *Relay
	Metrics   *Metrics
	Logger    *slog.Logger
	RetryBase time.Duration // first retry delay; doubled per attempt
	RetryMax  time.Duration // cap on the retry delay
	// SMTPTimeout bounds one delivery; the job's timeout is derived from it.
	SMTPTimeout time.Duration
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
	m, proceed, err := w.prepare(ctx, job)
	if err != nil || !proceed {
		return err
	}
	msg, err := compose(&m)
	if err != nil {
		return w.record(ctx, job, &m, SendResult{Reply: err.Error()}, err)
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
	// Once the relay has answered, the answer must be recorded even if we are shutting down:
	// losing a "sent" would send the message again.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	return w.record(rctx, job, &m, res, sendErr)
}

// prepare marks the message sending, asks consent.Decide and records a refusal. proceed is false
// when there is nothing to send: the message is gone, final already, or suppressed now. No
// transaction is held: each step is one statement, and a final message is never moved back, so a
// duplicate or rescued job cannot send it again.
func (w *SendWorker) prepare(ctx context.Context, job *river.Job[SendArgs]) (m Message, proceed bool, err error) {
	m, ok, err := messageMarkSending(ctx, w.DB, job.Args.MessageID, job.Attempt)
	if err != nil || !ok {
		return m, false, err
	}
	// Decide reads the suppression list (and, for marketing, the ledger) now, after the message
	// is claimed and immediately before the hand-off: a later change cannot be missed by an
	// earlier read.
	d, err := consent.Decide(ctx, w.DB, consent.Request{
		WorkspaceID: m.WorkspaceID, ContactID: m.ContactID, Address: m.To, Stream: m.Stream,
	})
	if err != nil {
		return m, false, fmt.Errorf("prepare send %s: %w", m.ID, err)
	}
	if !d.Allowed {
		if err := MessageSetStatus(ctx, w.DB, &m, Event{Status: StatusSuppressed, Attempt: job.Attempt, Detail: d.Reason}); err != nil {
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
func (w *SendWorker) record(ctx context.Context, job *river.Job[SendArgs], m *Message, res SendResult, sendErr error) error {
	if res.Enhanced == "" {
		res.Enhanced = enhancedRE.FindString(res.Reply)
	}
	ev := Event{Attempt: job.Attempt, EnhancedCode: res.Enhanced, Detail: res.Reply}
	if res.Code != 0 {
		ev.SMTPCode = &res.Code
	}
	retry := false
	switch {
	case sendErr == nil:
		ev.Status = StatusSent
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
		err = pgx.BeginFunc(ctx, w.DB, func(tx pgx.Tx) error {
			if err := MessageSetStatus(ctx, tx, m, ev); err != nil {
				return err
			}
			_, err := consent.Suppress(ctx, tx, consent.Suppression{
				WorkspaceID: m.WorkspaceID, Address: m.To, Reason: consent.ReasonHardBounce,
				Detail: res.Reply, MessageID: &m.ID,
			})
			return err
		})
	} else {
		err = MessageSetStatus(ctx, w.DB, m, ev)
	}
	if err != nil {
		return fmt.Errorf("record outcome of %s: %w", m.ID, err)
	}
	w.Metrics.Messages.WithLabelValues(m.Stream, ev.Status).Inc()
	w.Logger.InfoContext(ctx, "delivery", "message_id", m.ID, "workspace_id", m.WorkspaceID, "status", ev.Status,
		"attempt", job.Attempt, "smtp_code", res.Code, "enhanced", res.Enhanced, "hard_bounce", hardBounce)
	if retry {
		return fmt.Errorf("relay deferred message %s: %s", m.ID, res.Reply)
	}
	return nil
}
