package campaigns

import (
	"context"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	gomail "github.com/wneessen/go-mail"

	"herald/consent"
	"herald/internal/contacts"
	"herald/internal/db"
	"herald/mailer"
	"herald/templates"
)

// Defaults of SendBatchWorker's knobs.
const (
	DefaultLease         = time.Minute
	sendRetryBaseDefault = 30 * time.Second
	sendRetryMaxDefault  = 2 * time.Hour
)

// SendBatchWorker sends a range of a campaign's recipients (see the package doc): claim, then per
// consent group (ConsentGroup recipients) a consent decision in one transaction held open through
// the group's hand-offs, and for each allowed recipient render, compose, hand to the relay and
// commit the outcome through the OutcomeWriter before the next hand-off.
type SendBatchWorker struct {
	river.WorkerDefaults[SendBatchArgs]
	DB       *pgxpool.Pool
	Consent  *consent.Service
	Relay    mailer.Transport
	States   *StateCache
	Outcomes *OutcomeWriter
	Metrics  *mailer.Metrics
	Logger   *slog.Logger
	// MessageIDDomain is the right-hand side of the Message-IDs.
	MessageIDDomain string
	// Lease is how long a claim holds recipients before another job may take them (renewed
	// while the batch runs, so a slow, throttled batch keeps them); default DefaultLease.
	Lease time.Duration
	// RetryBase and RetryMax shape the backoff of a batch with deferred recipients.
	RetryBase, RetryMax time.Duration
	// Parallel is how many senders of one batch run at once (default 1: the batch goes over one
	// connection in sequence). Each hand-off takes a connection from the relay's pool, so
	// senders beyond the pool's size wait for one with their next message already built.
	Parallel int
	// Tracking, if set, instruments the messages of recipients who allow tracking.
	Tracking Tracker
	// ReturnPath, if set, gives a recipient's envelope sender: a VERP address naming the
	// recipient row, so that a bounce is matched to it (see mailer.Message.ReturnPath).
	ReturnPath func(workspaceID, recipientID int64) string

	pace sendPacer
}

// NextRetry backs off exponentially from RetryBase, capped at RetryMax, with ±10% jitter.
func (w *SendBatchWorker) NextRetry(job *river.Job[SendBatchArgs]) time.Time {
	base, maxDelay := sendDurOr(w.RetryBase, sendRetryBaseDefault), sendDurOr(w.RetryMax, sendRetryMaxDefault)
	d := base
	for i := 1; i < job.Attempt && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	return time.Now().Add(d + time.Duration(float64(d)*(rand.Float64()*0.2-0.1)))
}

// Timeout leaves a throttled batch time to finish; claims are renewed meanwhile.
func (w *SendBatchWorker) Timeout(*river.Job[SendBatchArgs]) time.Duration { return 30 * time.Minute }

func sendDurOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (w *SendBatchWorker) lease() time.Duration { return sendDurOr(w.Lease, DefaultLease) }

// claimedRecipient is one claimed row with what rendering needs of its contact.
type claimedRecipient struct {
	ID        int64
	ContactID int64
	Address   string
	Attempt   int
	Contact   *contacts.Contact // nil: the contact is gone
	Track     bool              // the message carries the pixel and rewritten links

	messageID string // computed once, by the one goroutine that sends this recipient
}

// sendClaimSQL takes the range's open recipients in one statement: queued or deferred ones, and
// those whose claim expired (their job died), that are due.
const sendClaimSQL = `
	WITH claimed AS (
		UPDATE campaign_recipients SET status = 'sending', claimed_until = now() + $4 * interval '1 millisecond',
			attempts = attempts + 1, updated_at = now()
		WHERE campaign_id = $1 AND id BETWEEN $2 AND $3
			AND (status IN ('queued', 'deferred') OR (status = 'sending' AND claimed_until < now()))
			AND (send_after IS NULL OR send_after <= now())
		RETURNING id, contact_id, address, attempts
	)
	SELECT cl.id, cl.contact_id, cl.address, cl.attempts, c.id IS NOT NULL AND c.email <> '',
		coalesce(c.external_id, ''), coalesce(c.email, ''), coalesce(c.name, ''), coalesce(c.locale, ''),
		coalesce(c.timezone, ''), coalesce(c.attributes, '{}'::jsonb)
	FROM claimed cl
	LEFT JOIN contacts c ON c.id = cl.contact_id AND c.workspace_id = $5
	ORDER BY cl.id`

func (w *SendBatchWorker) claim(ctx context.Context, a SendBatchArgs, workspaceID int64) ([]*claimedRecipient, error) {
	rows, err := w.DB.Query(ctx, sendClaimSQL, a.CampaignID, a.FirstID, a.LastID, w.lease().Milliseconds(), workspaceID)
	if err != nil {
		return nil, fmt.Errorf("claim recipients: %w", err)
	}
	defer rows.Close()
	var out []*claimedRecipient
	for rows.Next() {
		r := &claimedRecipient{}
		c := &contacts.Contact{WorkspaceID: workspaceID}
		var exists bool
		if err := rows.Scan(&r.ID, &r.ContactID, &r.Address, &r.Attempt, &exists,
			&c.ExternalID, &c.Email, &c.Name, &c.Locale, &c.Timezone, &c.Attributes); err != nil {
			return nil, fmt.Errorf("claim recipients: %w", err)
		}
		if exists {
			c.ID = r.ContactID
			r.Contact = c
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("claim recipients: %w", err)
	}
	return out, nil
}

// Work sends the open recipients of the job's range. It returns an error (River retries the job
// with backoff) when recipients were deferred or the batch could not run; on the job's last
// attempt a recipient the relay still defers fails instead.
func (w *SendBatchWorker) Work(ctx context.Context, job *river.Job[SendBatchArgs]) error {
	a := job.Args
	status, err := w.States.Status(ctx, a.CampaignID)
	if errors.Is(err, db.ErrNotFound) {
		return nil // the campaign was deleted with its recipients
	}
	if err != nil {
		return err
	}
	switch status {
	case csCancelled:
		return w.cancelRange(ctx, a)
	case csSending:
	default:
		return nil // paused or not yet started: resume enqueues the range again
	}
	c, err := w.States.content(ctx, a.CampaignID)
	if err != nil {
		return err
	}
	// The claims expire a lease after the claim statement starts (its now()): the batch counts
	// from before it, never from when the rows arrived, so it never believes it holds a row the
	// database already lets another job take.
	claimed := time.Now()
	rs, err := w.claim(ctx, a, c.WorkspaceID)
	if err != nil {
		return err
	}
	if len(rs) > 0 {
		b := &sendRun{w: w, c: c, job: job, held: rs, deadline: claimed.Add(w.lease())}
		if err := b.run(ctx); err != nil {
			return err
		}
		if b.deferred > 0 {
			return fmt.Errorf("campaign %d: %d recipients deferred by the relay", a.CampaignID, b.deferred)
		}
	}
	return w.finish(ctx, a.CampaignID)
}

// sendFinishSQL marks the campaign sent once its fan-out is done and no recipient is open. Every
// batch runs it after its own outcomes are committed, so the last batch to finish sees all. It
// looks for open recipients from $2 on, below which all are known to be final (finalPrefix), and
// returns the first open one it found, from which the next look starts: so the campaign's
// recipients are read about once in all, not once per batch.
const sendFinishSQL = `
	WITH first_open AS (
		SELECT id FROM campaign_recipients
		WHERE campaign_id = $1 AND id >= $2 AND status IN ('queued', 'sending', 'deferred')
		ORDER BY id LIMIT 1
	), sent AS (
		UPDATE campaigns SET status = 'sent', finished_at = now(), updated_at = now()
		WHERE id = $1 AND status = 'sending' AND fanout_done AND NOT EXISTS (SELECT 1 FROM first_open)
		RETURNING id
	)
	SELECT (SELECT id FROM first_open), EXISTS (SELECT 1 FROM sent)`

func (w *SendBatchWorker) finish(ctx context.Context, campaignID int64) error {
	sent, err := markSentIfDone(ctx, w.DB, &w.States.final, campaignID)
	if err != nil {
		return err
	}
	if sent {
		w.States.Forget(campaignID)
		w.Logger.InfoContext(ctx, "campaign sent", "campaign_id", campaignID)
	}
	return nil
}

// markSentIfDone runs sendFinishSQL from where final says the campaign's open recipients start,
// and moves that point up to the first open recipient found.
func markSentIfDone(ctx context.Context, q db.Querier, final *finalPrefix, campaignID int64) (bool, error) {
	var firstOpen *int64
	var sent bool
	if err := q.QueryRow(ctx, sendFinishSQL, campaignID, final.from(campaignID)).Scan(&firstOpen, &sent); err != nil {
		return false, fmt.Errorf("campaign %d: mark sent: %w", campaignID, err)
	}
	if firstOpen != nil {
		final.advance(campaignID, *firstOpen)
	}
	return sent, nil
}

// cancelRange closes the range's open recipients of a cancelled campaign. Rows held by a running
// batch are left to it: it sees the cancellation before its next message.
func (w *SendBatchWorker) cancelRange(ctx context.Context, a SendBatchArgs) error {
	_, err := w.DB.Exec(ctx, `
		UPDATE campaign_recipients SET status = 'cancelled', claimed_until = NULL, updated_at = now()
		WHERE campaign_id = $1 AND id BETWEEN $2 AND $3
			AND (status IN ('queued', 'deferred') OR (status = 'sending' AND claimed_until < now()))`,
		a.CampaignID, a.FirstID, a.LastID)
	if err != nil {
		return fmt.Errorf("campaign %d: cancel recipients: %w", a.CampaignID, err)
	}
	return nil
}

// batch is one run of Work over its claimed recipients.
type sendRun struct {
	w   *SendBatchWorker
	c   *sendContent
	job *river.Job[SendBatchArgs]

	mu       sync.Mutex
	held     []*claimedRecipient // claimed and not yet final, for lease renewal and release
	done     map[int64]bool
	deadline time.Time // when the claims expire unless renewed
	stop     string    // "", or the recipient status the rest of the batch goes to
	deferred int
	pending  []PendingOutcome
}

// ConsentGroup is how many recipients of a batch share one consent transaction: their consent
// locks are held from their decision until the outcomes of all of them are committed, so a
// withdrawal committed meanwhile waits for at most this many hand-offs, however large the batch
// job (HERALD_CAMPAIGN_BATCH) is.
const ConsentGroup = 100

// run sends the claimed recipients group by group (ConsentGroup), each group decided and sent in
// its own consent transaction, and then releases what a stop left unsent.
func (b *sendRun) run(ctx context.Context) error {
	b.done = make(map[int64]bool, len(b.held))
	bctx := context.WithoutCancel(ctx)
	held := b.held
	for len(held) > 0 && !b.stopped() && ctx.Err() == nil {
		n := min(len(held), ConsentGroup)
		if err := b.runGroup(ctx, held[:n]); err != nil {
			return err
		}
		held = held[n:]
	}
	b.mu.Lock()
	stop := b.stop
	b.mu.Unlock()
	if stop == "" && ctx.Err() != nil {
		stop = rsQueued
	}
	if stop != "" {
		b.release(bctx, stop)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("campaign %d: batch interrupted: %w", b.c.ID, ctx.Err())
	}
	return nil
}

// runGroup decides consent for a group in one transaction, which stays open (holding the
// contacts' consent locks) until every hand-off's outcome is committed, then sends the allowed
// recipients. On an error it has released every open recipient of the batch.
func (b *sendRun) runGroup(ctx context.Context, group []*claimedRecipient) error {
	w, c := b.w, b.c
	bctx := context.WithoutCancel(ctx)
	tx, err := w.DB.Begin(ctx)
	if err != nil {
		b.release(bctx, rsQueued)
		return fmt.Errorf("campaign %d: begin: %w", c.ID, err)
	}
	defer tx.Rollback(bctx) //nolint:errcheck // the transaction only holds locks; it writes nothing

	var asked []*claimedRecipient
	var brs []consent.BatchRecipient
	for _, r := range group {
		if r.Contact == nil {
			b.submit(ctx, r, Outcome{Status: rsSuppressed, Reason: consent.ReasonNoContact})
			continue
		}
		asked = append(asked, r)
		brs = append(brs, consent.BatchRecipient{ContactID: r.ContactID, Address: r.Address})
	}
	var allowed []*claimedRecipient
	if len(brs) > 0 {
		ds, err := w.Consent.DecideBatch(ctx, tx, c.WorkspaceID, c.Purpose, brs)
		if err != nil {
			b.waitPending(bctx)
			b.release(bctx, rsQueued)
			return fmt.Errorf("campaign %d: %w", c.ID, err)
		}
		for i, d := range ds {
			if d.Allowed {
				// The workspace's tracking mode and the contact's choice, decided with consent.
				asked[i].Track = w.Tracking != nil && d.Track
				allowed = append(allowed, asked[i])
			} else {
				b.submit(ctx, asked[i], Outcome{Status: rsSuppressed, Reason: d.Reason})
			}
		}
	}

	par := min(max(w.Parallel, 1), max(len(allowed), 1))
	next := make(chan *claimedRecipient, len(allowed))
	for _, r := range allowed {
		next <- r
	}
	close(next)
	var wg sync.WaitGroup
	for range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.sendLoop(ctx, next)
		}()
	}
	wg.Wait()
	b.waitPending(bctx)
	if err := tx.Commit(bctx); err != nil {
		w.Logger.WarnContext(ctx, "campaign batch: end of consent transaction", "campaign_id", c.ID, "err", err)
	}
	return nil
}

// sendLoop hands the recipients it takes from next to the relay one at a time, waiting for the
// previous outcome's commit before each hand-off (so at most one relay answer per loop is not yet
// durable) while rendering the next message meanwhile.
func (b *sendRun) sendLoop(ctx context.Context, next <-chan *claimedRecipient) {
	w, c := b.w, b.c
	var prev PendingOutcome
	wait := func() {
		if prev.p != nil {
			if _, err := prev.Wait(context.WithoutCancel(ctx)); err != nil {
				b.setStop(rsQueued) // the database is failing: leave the rest to a retry
			}
			prev = PendingOutcome{}
		}
	}
	defer wait()
	for r := range next {
		if stop := b.checkStop(ctx); stop != "" {
			return
		}
		if b.lost(r) {
			continue // its lease expired and another job claimed it
		}
		msg, fail := b.compose(ctx, r)
		wait()
		if b.stopped() {
			return
		}
		if fail != nil {
			w.Logger.ErrorContext(ctx, "campaign message not built", "campaign_id", c.ID, "recipient_id", r.ID, "err", fail)
			prev = b.submit(ctx, r, Outcome{Status: rsFailed, Reason: sendTruncateReason(fail.Error())})
			continue
		}
		if err := b.throttle(ctx, r); err != nil {
			return // cancelled: run releases the rest
		}
		// Waiting for the previous outcome or the throttle may have eaten into the lease: renew
		// it now if half of it is gone (no round trip otherwise), and hand off only a recipient
		// this claim still holds, so an expired claim taken by another job is never sent twice.
		if err := b.renew(ctx); err != nil {
			w.Logger.WarnContext(ctx, "campaign claims not renewed; batch stops", "campaign_id", c.ID, "err", err)
			b.setStop(rsQueued)
			return
		}
		if b.lost(r) {
			continue
		}
		start := time.Now()
		res, sendErr := w.Relay.Send(ctx, msg)
		o := b.outcome(r, res, sendErr)
		label := "ok"
		if sendErr != nil {
			label = "permanent"
			if res.Temporary {
				label = "temporary"
			}
		}
		w.Metrics.SendDuration.WithLabelValues(label).Observe(time.Since(start).Seconds())
		if o.Status == rsFailed && strings.HasPrefix(sendEnhancedCode(res), "5.1.") {
			// Listed before the outcome is written: after a crash in between, the resend is
			// refused by the suppression list rather than bounced again.
			_, err := w.Consent.Suppress(context.WithoutCancel(ctx), w.DB, consent.Suppression{
				WorkspaceID: c.WorkspaceID, Address: r.Address, Reason: consent.ReasonHardBounce,
				Detail: res.Reply, Actor: "campaign:" + strconv.FormatInt(c.ID, 10)})
			if err != nil {
				w.Logger.ErrorContext(ctx, "hard bounce not suppressed", "campaign_id", c.ID, "recipient_id", r.ID, "err", err)
			}
		}
		prev = b.submit(ctx, r, o)
		if o.Status == rsDeferred && res.Code == 0 {
			// No reply at all: the relay (or every relay) is unreachable. The rest of the batch
			// waits for the job's retry instead of failing one by one.
			b.setStop(rsDeferred)
			return
		}
	}
}

var sendEnhancedRE = regexp.MustCompile(`\b[245]\.\d{1,3}\.\d{1,3}\b`)

func sendEnhancedCode(res mailer.SendResult) string {
	if res.Enhanced != "" {
		return res.Enhanced
	}
	return sendEnhancedRE.FindString(res.Reply)
}

// outcome turns the relay's answer into the recipient's outcome. A temporary refusal on the
// job's or the recipient's last attempt fails it: it is never left open for ever.
func (b *sendRun) outcome(r *claimedRecipient, res mailer.SendResult, sendErr error) Outcome {
	o := Outcome{SMTPCode: res.Code, SMTPReply: res.Reply}
	switch {
	case sendErr == nil:
		o.Status, o.SentAt = rsSent, time.Now()
	case res.Temporary && b.job.Attempt < b.job.MaxAttempts && r.Attempt < b.job.MaxAttempts:
		o.Status = rsDeferred
		b.mu.Lock()
		b.deferred++
		b.mu.Unlock()
	case res.Temporary:
		o.Status, o.Reason = rsFailed, fmt.Sprintf("gave up after %d attempts", r.Attempt)
	default:
		o.Status, o.Reason = rsFailed, "rejected"
		if strings.HasPrefix(sendEnhancedCode(res), "5.1.") {
			o.Reason = consent.ReasonHardBounce
		}
	}
	return o
}

// submit queues r's outcome and marks r final in the batch.
func (b *sendRun) submit(ctx context.Context, r *claimedRecipient, o Outcome) PendingOutcome {
	o.RecipientID, o.Attempt = r.ID, r.Attempt
	if o.Status == rsSent {
		o.MessageID = b.messageID(r)
	}
	b.mu.Lock()
	b.done[r.ID] = true
	b.mu.Unlock()
	p, err := b.w.Outcomes.Submit(context.WithoutCancel(ctx), o)
	if err != nil {
		b.w.Logger.ErrorContext(ctx, "campaign outcome not queued", "campaign_id", b.c.ID, "recipient_id", r.ID, "err", err)
		b.setStop(rsQueued)
		return PendingOutcome{}
	}
	b.w.Metrics.Messages.WithLabelValues(mailer.StreamMarketing, o.Status).Inc()
	b.mu.Lock()
	b.pending = append(b.pending, p)
	b.mu.Unlock()
	return p
}

func (b *sendRun) waitPending(ctx context.Context) {
	b.mu.Lock()
	ps := b.pending
	b.pending = nil
	b.mu.Unlock()
	for _, p := range ps {
		if _, err := p.Wait(ctx); err != nil {
			b.setStop(rsQueued)
		}
	}
}

func (b *sendRun) setStop(status string) {
	b.mu.Lock()
	if b.stop == "" || status == rsCancelled {
		b.stop = status
	}
	b.mu.Unlock()
}

func (b *sendRun) lost(r *claimedRecipient) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.done[r.ID]
}

func (b *sendRun) stopped() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stop != ""
}

// checkStop reads the campaign's cached status between two messages (pause and cancel take
// effect here), stops on a cancelled context, and renews the claims when half the lease is gone.
func (b *sendRun) checkStop(ctx context.Context) string {
	if ctx.Err() != nil {
		b.setStop(rsQueued)
	}
	if b.stopped() {
		return "stopped"
	}
	status, err := b.w.States.Status(ctx, b.c.ID)
	switch {
	case err != nil:
		b.w.Logger.WarnContext(ctx, "campaign status unreadable; batch stops", "campaign_id", b.c.ID, "err", err)
		b.setStop(rsQueued)
	case status == csCancelled:
		b.setStop(rsCancelled)
	case status != csSending:
		b.setStop(rsQueued)
	}
	if b.stopped() {
		return "stopped"
	}
	if err := b.renew(ctx); err != nil {
		b.w.Logger.WarnContext(ctx, "campaign claims not renewed; batch stops", "campaign_id", b.c.ID, "err", err)
		b.setStop(rsQueued)
		return "stopped"
	}
	return ""
}

// open returns the held recipients not yet final, with their ids and attempts.
func (b *sendRun) openLocked() (ids []int64, attempts []int32) {
	for _, r := range b.held {
		if !b.done[r.ID] {
			ids = append(ids, r.ID)
			attempts = append(attempts, int32(r.Attempt))
		}
	}
	return ids, attempts
}

// renew extends the lease of the batch's open recipients when less than half of it is left.
// Rows no longer held by this claim (an expired lease taken by another job) are dropped from the
// batch, so they are not sent twice.
func (b *sendRun) renew(ctx context.Context) error {
	lease := b.w.lease()
	b.mu.Lock()
	defer b.mu.Unlock()
	if time.Until(b.deadline) > lease/2 {
		return nil
	}
	ids, attempts := b.openLocked()
	at := time.Now()
	rows, err := b.w.DB.Query(ctx, `
		UPDATE campaign_recipients r SET claimed_until = now() + $3 * interval '1 millisecond'
		FROM unnest($1::bigint[], $2::int[]) AS u (id, attempts)
		WHERE r.id = u.id AND r.status = 'sending' AND r.attempts = u.attempts
		RETURNING r.id`, ids, attempts, lease.Milliseconds())
	if err != nil {
		return fmt.Errorf("renew claims: %w", err)
	}
	kept, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return fmt.Errorf("renew claims: %w", err)
	}
	still := make(map[int64]bool, len(kept))
	for _, id := range kept {
		still[id] = true
	}
	for _, id := range ids {
		if !still[id] {
			b.done[id] = true // lost: another claim owns it now
		}
	}
	b.deadline = at.Add(lease)
	return nil
}

// release returns the batch's recipients that were not handed off to status: queued (pause, an
// interrupted run: the claim's attempt is given back), deferred (the relay is unreachable) or
// cancelled.
func (b *sendRun) release(ctx context.Context, status string) {
	b.mu.Lock()
	ids, attempts := b.openLocked()
	b.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	_, err := b.w.DB.Exec(ctx, `
		UPDATE campaign_recipients r SET status = $3, claimed_until = NULL, updated_at = now(),
			attempts = CASE WHEN $3 = 'queued' THEN r.attempts - 1 ELSE r.attempts END
		FROM unnest($1::bigint[], $2::int[]) AS u (id, attempts)
		WHERE r.id = u.id AND r.status = 'sending' AND r.attempts = u.attempts`, ids, attempts, status)
	if err != nil {
		// The claims expire with their lease and the recipients are taken again then.
		b.w.Logger.WarnContext(ctx, "campaign claims not released", "campaign_id", b.c.ID, "err", err)
		return
	}
	if status == rsDeferred {
		b.mu.Lock()
		b.deferred += len(ids)
		b.mu.Unlock()
	}
}

// messageID is the claimedRecipient's Message-ID (see MessageID), computed once for the message
// and its outcome.
func (b *sendRun) messageID(r *claimedRecipient) string {
	if r.messageID == "" {
		r.messageID = MessageID(b.w.Consent.Keys, b.c.ID, r.ID, b.w.MessageIDDomain)
	}
	return r.messageID
}

// compose renders the claimedRecipient's message with their own links and composes it. A message whose
// rendered parts lack the claimedRecipient's unsubscribe link is refused: scheduling checks the
// template, and this makes sure no marketing message leaves without the link whatever the data.
func (b *sendRun) compose(ctx context.Context, r *claimedRecipient) (mailer.Composed, error) {
	c := b.c
	token := b.w.Consent.Keys.Token(consent.Recipient{WorkspaceID: c.WorkspaceID, ContactID: r.ContactID, PurposeID: c.PurposeID})
	unsub := c.List.UnsubscribeURL(token)
	out, err := c.Template.RenderContact(*r.Contact)
	if err != nil {
		return mailer.Composed{}, fmt.Errorf("render: %w", err)
	}
	if r.Track && out.HTML != "" {
		if out.HTML, err = b.w.Tracking.Instrument(ctx, c.WorkspaceID, c.ID, r.ID, out.HTML); err != nil {
			return mailer.Composed{}, fmt.Errorf("tracking: %w", err)
		}
	}
	links := templates.Links{Unsubscribe: unsub, Preferences: unsub, PostalAddress: c.PostalAddress}
	if usesViewOnline(out) {
		links.ViewOnline = b.viewURL(r) // a signed token: computed only for a template that prints it
	}
	out = out.WithLinks(links)
	if (out.HTML != "" && !strings.Contains(out.HTML, html.EscapeString(unsub))) || !strings.Contains(out.Text, unsub) {
		return mailer.Composed{}, errors.New("no_unsubscribe_link: the rendered message lacks the claimedRecipient's unsubscribe link")
	}
	contactID := r.ContactID
	m := &mailer.Message{
		ID: strconv.FormatInt(r.ID, 10), WorkspaceID: c.WorkspaceID, Purpose: c.Purpose, ContactID: &contactID,
		To: r.Address, ToName: r.Contact.Name, From: c.From, FromName: c.FromName, ReplyTo: c.ReplyTo,
		Subject: out.Subject, HTML: out.HTML, Text: out.Text, MessageID: b.messageID(r), CreatedAt: time.Now(),
		Headers: map[string]string{"X-Herald-Campaign": strconv.FormatInt(c.ID, 10)},
	}
	if b.w.ReturnPath != nil {
		m.ReturnPath = b.w.ReturnPath(c.WorkspaceID, r.ID)
	}
	return c.List.Compose(m, token)
}

// build is compose's message without the signed bytes, for the view-online page.
func (b *sendRun) build(ctx context.Context, r *claimedRecipient) (*gomail.Msg, error) {
	m, err := b.compose(ctx, r)
	return m.Msg, err
}

// usesViewOnline reports whether a rendered message holds the view-online placeholder, which
// WithLinks replaces.
func usesViewOnline(out templates.Rendered) bool {
	return strings.Contains(out.HTML, templates.PlaceholderViewOnline) || strings.Contains(out.Text, templates.PlaceholderViewOnline) ||
		strings.Contains(out.Subject, templates.PlaceholderViewOnline)
}

func sendTruncateReason(s string) string {
	if len(s) > 300 {
		return s[:300]
	}
	return s
}

// throttle waits for the campaign's overall rate and the recipient domain's rate.
func (b *sendRun) throttle(ctx context.Context, r *claimedRecipient) error {
	if err := b.w.pace.wait(ctx, sendPaceKey{b.c.ID, ""}, b.c.RatePerSecond); err != nil {
		return err
	}
	domain := strings.ToLower(r.Address[strings.LastIndexByte(r.Address, '@')+1:])
	return b.w.pace.wait(ctx, sendPaceKey{b.c.ID, domain}, b.c.DomainRate)
}

// sendPacer spaces a process's messages per key (a campaign, or a campaign and recipient domain) at
// a rate per second: an in-process token bucket of one token.
type sendPacer struct {
	mu   sync.Mutex
	next map[sendPaceKey]time.Time
}

type sendPaceKey struct {
	campaign int64
	domain   string
}

// maxSendPaceKeys bounds the sendPacer; past it, keys whose slot has passed are dropped.
const maxSendPaceKeys = 10000

func (p *sendPacer) wait(ctx context.Context, k sendPaceKey, perSecond int) error {
	if perSecond <= 0 {
		return nil
	}
	interval := time.Second / time.Duration(perSecond)
	now := time.Now()
	p.mu.Lock()
	if p.next == nil {
		p.next = map[sendPaceKey]time.Time{}
	}
	if len(p.next) >= maxSendPaceKeys {
		for key, at := range p.next {
			if at.Before(now) {
				delete(p.next, key)
			}
		}
	}
	at := p.next[k]
	if at.Before(now) {
		at = now
	}
	p.next[k] = at.Add(interval)
	p.mu.Unlock()
	d := at.Sub(now)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
