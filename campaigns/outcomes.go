package campaigns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"herald/internal/db"
)

// Recipient statuses (campaign_recipients.status), as the send worker writes them.
const (
	rsQueued     = "queued"
	rsSending    = "sending"
	rsSent       = "sent"
	rsSuppressed = "suppressed"
	rsDeferred   = "deferred"
	rsFailed     = "failed"
	rsCancelled  = "cancelled"
)

// Outcome is what happened to one claimed recipient: the relay's answer to its message, or the
// reason it was not sent.
type Outcome struct {
	RecipientID int64
	// Attempt is the recipient's attempts counter as the claim set it. An outcome whose row has
	// since been claimed again (its lease expired) is not written: that claim's outcome will be.
	Attempt   int
	Status    string // sent, deferred, failed or suppressed
	Reason    string // why it was suppressed or failed
	MessageID string
	SMTPCode  int // 0: no reply
	SMTPReply string
	SentAt    time.Time // when the relay accepted it (sent only)
}

// DefaultMaxGroup bounds how many outcomes one statement writes.
const DefaultMaxGroup = 512

// DefaultLinger is OutcomeWriter.Linger's default. Under load the senders' outcomes arrive in
// bursts, a few per statement (7.5 on average in BenchmarkCampaignSend100k with 32 senders); a
// millisecond lets the hand-offs under way join the statement: there, about half as many
// statements (transactions per message 0.06 against 0.11-0.12) and some 0.005 ms less
// PostgreSQL CPU per message, while a sender waits at most that much longer before its next
// hand-off.
const DefaultLinger = time.Millisecond

// lingerAfter is the previous group's size from which the writer lingers: a sign that several
// senders are busy, so that waiting gathers outcomes rather than just delaying one.
const lingerAfter = 4

// ErrWriterClosed is returned by Write after Close.
var ErrWriterClosed = errors.New("outcome writer closed")

// OutcomeWriter commits outcomes by group commit: one goroutine per process takes every outcome
// queued while its previous statement ran (from all workers) and writes them with one UPDATE ...
// FROM unnest(...), outside any consent transaction. Write returns only once its outcome is
// committed, so a worker that waits for it before its next hand-off has at most one message whose
// relay answer is not yet durable: the only message a crash can send twice.
type OutcomeWriter struct {
	DB       db.Querier
	Logger   *slog.Logger
	MaxGroup int // default DefaultMaxGroup
	// Linger is how long the writer waits for more outcomes before a statement when the previous
	// one wrote at least lingerAfter, so a lone sender never waits (default DefaultLinger;
	// negative: never).
	Linger time.Duration

	once    sync.Once
	mu      sync.RWMutex // guards closed against sends on reqs
	closed  bool
	reqs    chan *pendingOutcome
	stopped chan struct{}

	// Groups and Written count statements and outcomes written (tests and the benchmark read them).
	stats struct {
		sync.Mutex
		groups, written int64
	}
}

type pendingOutcome struct {
	o    Outcome
	done chan struct{} // closed once err and ok are set; any number of waiters
	err  error
	ok   bool // the row was still this claim's and is now final
}

func (w *OutcomeWriter) start() {
	w.once.Do(func() {
		max := w.MaxGroup
		if max <= 0 {
			max = DefaultMaxGroup
		}
		w.MaxGroup = max
		if w.Linger == 0 {
			w.Linger = DefaultLinger
		}
		w.reqs = make(chan *pendingOutcome, max)
		w.stopped = make(chan struct{})
		go w.run()
	})
}

// Write commits o and reports whether it was applied: false when the row is no longer held by
// this claim (it was claimed again after its lease expired, or released). ctx only bounds the
// wait; an outcome already queued is still written.
func (w *OutcomeWriter) Write(ctx context.Context, o Outcome) (applied bool, err error) {
	p, err := w.Submit(ctx, o)
	if err != nil {
		return false, err
	}
	return p.Wait(ctx)
}

// PendingOutcome is an outcome submitted and not yet known to be committed.
type PendingOutcome struct{ p *pendingOutcome }

// Submit queues o and returns at once; Wait on the result before the next hand-off. It lets a
// worker prepare its next message while the outcome of the last one commits.
func (w *OutcomeWriter) Submit(ctx context.Context, o Outcome) (PendingOutcome, error) {
	w.start()
	p := &pendingOutcome{o: o, done: make(chan struct{})}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return PendingOutcome{}, ErrWriterClosed
	}
	select {
	case w.reqs <- p:
		return PendingOutcome{p}, nil
	case <-ctx.Done():
		return PendingOutcome{}, fmt.Errorf("record outcome: %w", ctx.Err())
	}
}

// Wait returns when the outcome is committed (or failed to be).
func (p PendingOutcome) Wait(ctx context.Context) (applied bool, err error) {
	select {
	case <-p.p.done:
		return p.p.ok, p.p.err
	case <-ctx.Done():
		return false, fmt.Errorf("record outcome: %w", ctx.Err())
	}
}

// Close writes what is queued and stops the writer. Call it after the workers have stopped.
func (w *OutcomeWriter) Close() {
	w.start()
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.reqs)
	}
	w.mu.Unlock()
	<-w.stopped
}

// Stats returns how many statements wrote how many outcomes so far.
func (w *OutcomeWriter) Stats() (groups, written int64) {
	w.stats.Lock()
	defer w.stats.Unlock()
	return w.stats.groups, w.stats.written
}

func (w *OutcomeWriter) run() {
	defer close(w.stopped)
	group := make([]*pendingOutcome, 0, w.MaxGroup)
	var cols outcomeColumns
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	last := 0 // the size of the previous group
	for p := range w.reqs {
		group = append(group[:0], p)
		w.drain(&group)
		if d := w.Linger; d > 0 && last >= lingerAfter && len(group) < w.MaxGroup {
			// Busy: outcomes arrive while a statement runs. Give the senders whose hand-offs
			// are under way a moment to join this statement instead of the next.
			linger.Reset(d)
		wait:
			for len(group) < w.MaxGroup {
				select {
				case p, ok := <-w.reqs:
					if !ok {
						break wait
					}
					group = append(group, p)
				case <-linger.C:
					break wait
				}
			}
			linger.Stop()
		}
		last = len(group)
		err := w.flush(&cols, group)
		for _, p := range group {
			p.err = err
			close(p.done)
		}
	}
}

// drain adds to group what is queued now, up to MaxGroup.
func (w *OutcomeWriter) drain(group *[]*pendingOutcome) {
	for len(*group) < w.MaxGroup {
		select {
		case p, ok := <-w.reqs:
			if !ok {
				return
			}
			*group = append(*group, p)
		default:
			return
		}
	}
}

// outcomesWriteSQL finalises the rows still held by the claims that produced the outcomes.
const outcomesWriteSQL = `
	UPDATE campaign_recipients r SET
		status = u.status, reason = u.reason,
		message_id = CASE WHEN u.message_id <> '' THEN u.message_id ELSE r.message_id END,
		smtp_code = NULLIF(u.code, 0), smtp_reply = u.reply,
		sent_at = CASE WHEN u.status = 'sent' THEN u.sent_at ELSE r.sent_at END,
		claimed_until = NULL, updated_at = now()
	FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[], $6::int[], $7::text[], $8::timestamptz[])
		AS u (id, attempts, status, reason, message_id, code, reply, sent_at)
	WHERE r.id = u.id AND r.status = 'sending' AND r.attempts = u.attempts
	RETURNING r.id`

// flushAttempts retries a group that hit a deadlock or serialisation failure (a claim of
// expired rows may lock them in another order).
const flushAttempts = 3

// outcomeColumns are a group's outcomes as the statement's arrays, reused from group to group by
// the writer's goroutine.
type outcomeColumns struct {
	ids                                []int64
	attempts, codes                    []int32
	statuses, reasons, msgIDs, replies []string
	sentAt                             []time.Time
	byID                               map[int64]*pendingOutcome
}

func (c *outcomeColumns) fill(group []*pendingOutcome) {
	c.ids, c.attempts, c.codes = c.ids[:0], c.attempts[:0], c.codes[:0]
	c.statuses, c.reasons, c.msgIDs, c.replies = c.statuses[:0], c.reasons[:0], c.msgIDs[:0], c.replies[:0]
	c.sentAt = c.sentAt[:0]
	if c.byID == nil {
		c.byID = make(map[int64]*pendingOutcome, len(group))
	}
	clear(c.byID)
	now := time.Now()
	for _, p := range group {
		o := p.o
		sentAt := o.SentAt
		if sentAt.IsZero() {
			sentAt = now
		}
		c.ids, c.attempts, c.codes = append(c.ids, o.RecipientID), append(c.attempts, int32(o.Attempt)), append(c.codes, int32(o.SMTPCode))
		c.statuses, c.reasons = append(c.statuses, o.Status), append(c.reasons, o.Reason)
		c.msgIDs, c.replies = append(c.msgIDs, o.MessageID), append(c.replies, o.SMTPReply)
		c.sentAt = append(c.sentAt, sentAt)
		c.byID[o.RecipientID] = p
	}
}

func (w *OutcomeWriter) flush(c *outcomeColumns, group []*pendingOutcome) error {
	n := len(group)
	c.fill(group)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	for try := 0; try < flushAttempts; try++ {
		err = w.write(ctx, c.byID, c.ids, c.attempts, c.statuses, c.reasons, c.msgIDs, c.codes, c.replies, c.sentAt)
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || (pgErr.Code != "40P01" && pgErr.Code != "40001") {
			break
		}
	}
	if err != nil {
		if w.Logger != nil {
			w.Logger.Error("campaign outcomes not recorded; their recipients will be retried after their lease",
				"outcomes", n, "err", err)
		}
		return fmt.Errorf("record outcomes: %w", err)
	}
	w.stats.Lock()
	w.stats.groups++
	w.stats.written += int64(n)
	w.stats.Unlock()
	return nil
}

func (w *OutcomeWriter) write(ctx context.Context, byID map[int64]*pendingOutcome, args ...any) error {
	for _, p := range byID {
		p.ok = false // a retried group starts again
	}
	rows, err := w.DB.Query(ctx, outcomesWriteSQL, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return err
		}
		if p := byID[id]; p != nil {
			p.ok = true
		}
	}
	return rows.Err()
}
