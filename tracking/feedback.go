package tracking

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"herald/campaigns"
	"herald/consent"
	"herald/internal/contacts"
	"herald/internal/httpx"
)

// Kinds of feedback (feedback_events.kind).
const (
	KindHardBounce = "hard_bounce"
	KindSoftBounce = "soft_bounce"
	KindComplaint  = "complaint"
)

// Sources of feedback (feedback_events.source).
const (
	SourceDSN      = "dsn"
	SourceARF      = "arf"
	SourceSES      = "ses"
	SourceSendGrid = "sendgrid"
	SourcePostmark = "postmark"
)

// Limits of what a feedback row keeps of a report.
const (
	maxStatusLen  = 32
	maxDetailLen  = 1000
	maxEventIDLen = 200
	// maxAddressContacts bounds the contacts a report naming only an address acts on.
	maxAddressContacts = 100
)

// ErrUnmatched is returned by Process when the report names no message or recipient of the
// workspace, and no address: there is nothing to act on.
var ErrUnmatched = errors.New("feedback names no message of the workspace")

// Report is one bounce or complaint, as an intake (the SMTP receiver, a webhook) understood it.
// The message it is about is found from the first of Target, MessageID and Address that is set.
type Report struct {
	WorkspaceID int64
	Kind        string // KindHardBounce, KindSoftBounce or KindComplaint
	Source      string // SourceDSN, ...
	// Target is what the VERP address the report came to names.
	Target *BounceTarget
	// MessageID is the Message-ID of the bounced message (with or without angle brackets), as a
	// provider reports it: a campaign's (campaigns.ParseMessageID) or a message's.
	MessageID string
	// Address is the recipient's address, used only when neither of the above finds a message.
	Address string
	// Status is the enhanced status code (5.1.1) when there is one; Detail the diagnostic text.
	Status string
	Detail string
	// ProviderEventID, when set, makes a repeated delivery of the same event count once.
	ProviderEventID string
	// At is when the bounce or complaint happened (the intake's clock when zero).
	At time.Time
}

// Outcome says what Process did.
type Outcome struct {
	Duplicate   bool // the event was recorded before: nothing done
	CampaignID  int64
	RecipientID int64
	MessageID   string // uuid of the message, when the report is about one
	Suppressed  bool   // this report put the address on the suppression list
	Withdrawn   int    // ledger withdrawals a complaint recorded
}

// FeedbackMetrics are the Prometheus counters of bounces and complaints. Their labels are
// bounded: the type of bounce and the source (one of the Source* constants).
type FeedbackMetrics struct {
	Bounces    *prometheus.CounterVec // herald_bounces_total{type="hard|soft",source}
	Complaints *prometheus.CounterVec // herald_complaints_total{source}
}

// NewFeedbackMetrics registers the counters with reg.
func NewFeedbackMetrics(reg prometheus.Registerer) *FeedbackMetrics {
	m := &FeedbackMetrics{
		Bounces: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_bounces_total",
			Help: "Bounce reports recorded, by type (hard, soft) and source."}, []string{"type", "source"}),
		Complaints: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_complaints_total",
			Help: "Spam complaints recorded, by source."}, []string{"source"}),
	}
	reg.MustRegister(m.Bounces, m.Complaints)
	return m
}

// Feedback turns bounce and complaint reports into suppressions and ledger withdrawals. Every
// intake calls Process; each report is one transaction.
type Feedback struct {
	DB      *pgxpool.Pool
	Consent *consent.Service
	Metrics *FeedbackMetrics
	Logger  *slog.Logger
	// Now is the clock (time.Now when nil); it dates reports without a time and places the
	// soft-bounce window.
	Now func() time.Time
}

func (f *Feedback) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

func (f *Feedback) logger() *slog.Logger { return httpx.LoggerOrDiscard(f.Logger) }

// sendRef is the send a report was matched to: the address the message went to (from its row,
// never from the report when a row is found) and what names it.
type sendRef struct {
	address     string
	contactIDs  []int64
	campaignID  int64
	recipientID int64
	messageID   *string
}

// Process records r and acts on it, in one transaction: a hard bounce suppresses the address
// for every stream (reason hard_bounce); a soft bounce does too once the workspace's
// soft_bounce_limit of them fell within soft_bounce_window; a complaint withdraws the contact's
// marketing consent (source complaint) and suppresses the address (reason complaint). The
// campaign recipient row is left as it is (its status stays sent); the feedback row names it.
func (f *Feedback) Process(ctx context.Context, r Report) (Outcome, error) {
	if err := r.check(); err != nil {
		return Outcome{}, fmt.Errorf("process feedback: %w", err)
	}
	if now := f.now(); r.At.IsZero() || r.At.After(now) {
		r.At = now // a report dated in the future would count in the soft-bounce window forever
	}
	r.Status, r.Detail = clean(r.Status, maxStatusLen), clean(redactAddresses(r.Detail), maxDetailLen)
	var out Outcome
	err := pgx.BeginFunc(ctx, f.DB, func(tx pgx.Tx) error {
		var err error
		out, err = f.process(ctx, tx, r)
		return err
	})
	if err != nil {
		return Outcome{}, fmt.Errorf("process feedback: %w", err)
	}
	if !out.Duplicate && f.Metrics != nil {
		switch r.Kind {
		case KindHardBounce:
			f.Metrics.Bounces.WithLabelValues("hard", r.Source).Inc()
		case KindSoftBounce:
			f.Metrics.Bounces.WithLabelValues("soft", r.Source).Inc()
		case KindComplaint:
			f.Metrics.Complaints.WithLabelValues(r.Source).Inc()
		}
	}
	f.logger().InfoContext(ctx, "feedback", "workspace_id", r.WorkspaceID, "kind", r.Kind, "source", r.Source,
		"campaign_id", out.CampaignID, "recipient_id", out.RecipientID, "message_id", out.MessageID,
		"duplicate", out.Duplicate, "suppressed", out.Suppressed, "withdrawn", out.Withdrawn)
	return out, nil
}

func (r *Report) check() error {
	switch {
	case r.WorkspaceID == 0:
		return errors.New("report names no workspace")
	case r.Kind != KindHardBounce && r.Kind != KindSoftBounce && r.Kind != KindComplaint:
		return fmt.Errorf("unknown kind %q", r.Kind)
	case r.Source != SourceDSN && r.Source != SourceARF && r.Source != SourceSES && r.Source != SourceSendGrid && r.Source != SourcePostmark:
		return fmt.Errorf("unknown source %q", r.Source)
	}
	r.ProviderEventID = clean(r.ProviderEventID, maxEventIDLen)
	return nil
}

func (f *Feedback) process(ctx context.Context, tx pgx.Tx, r Report) (Outcome, error) {
	ref, err := f.resolve(ctx, tx, r)
	if err != nil {
		return Outcome{}, err
	}
	out := Outcome{CampaignID: ref.campaignID, RecipientID: ref.recipientID}
	if ref.messageID != nil {
		out.MessageID = *ref.messageID
	}
	hash := f.Consent.Keys.AddressHash(r.WorkspaceID, ref.address)
	// One report of an address at a time: the soft-bounce count below must see every earlier one.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, feedbackLockKey(r.WorkspaceID, hash)); err != nil {
		return out, fmt.Errorf("lock address: %w", err)
	}
	var campaignID, recipientID *int64
	if ref.recipientID != 0 {
		campaignID, recipientID = &ref.campaignID, &ref.recipientID
	}
	var eventID *string
	if r.ProviderEventID != "" {
		eventID = &r.ProviderEventID
	}
	tag, err := tx.Exec(ctx, `
		INSERT INTO feedback_events (workspace_id, kind, source, address_hash, campaign_id, recipient_id, message_id,
			status, detail, provider_event_id, at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (workspace_id, source, provider_event_id) DO NOTHING`,
		r.WorkspaceID, r.Kind, r.Source, hash, campaignID, recipientID, ref.messageID, r.Status, r.Detail, eventID, r.At)
	if err != nil {
		return out, fmt.Errorf("insert feedback event: %w", err)
	}
	if tag.RowsAffected() == 0 {
		out.Duplicate = true
		return out, nil
	}
	detail := strings.TrimSpace(r.Source + " " + r.Status)
	switch r.Kind {
	case KindHardBounce:
		out.Suppressed, err = f.Consent.Suppress(ctx, tx, consent.Suppression{WorkspaceID: r.WorkspaceID, Address: ref.address,
			AddressHash: hash, Reason: consent.ReasonHardBounce, Detail: detail, MessageID: ref.messageID, Actor: consent.ActorFeedback})
	case KindSoftBounce:
		out.Suppressed, err = f.softBounce(ctx, tx, r, ref, hash)
	case KindComplaint:
		out.Withdrawn, err = f.Consent.Complaint(ctx, tx, r.WorkspaceID, ref.contactIDs, ref.address, detail, ref.messageID)
		out.Suppressed = err == nil
	}
	return out, err
}

// softBounce suppresses the address when the soft bounces recorded for it within the workspace's
// window (this one included) reach its limit.
func (f *Feedback) softBounce(ctx context.Context, tx pgx.Tx, r Report, ref sendRef, hash []byte) (bool, error) {
	st, err := consent.SettingsGet(ctx, tx, r.WorkspaceID)
	if err != nil {
		return false, err
	}
	var n int
	err = tx.QueryRow(ctx, `SELECT count(*) FROM feedback_events
		WHERE workspace_id = $1 AND address_hash = $2 AND kind = 'soft_bounce' AND at > $3`,
		r.WorkspaceID, hash, f.now().Add(-st.SoftBounceWindow)).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("count soft bounces: %w", err)
	}
	if n < st.SoftBounceLimit {
		return false, nil
	}
	return f.Consent.Suppress(ctx, tx, consent.Suppression{WorkspaceID: r.WorkspaceID, Address: ref.address, AddressHash: hash,
		Reason: consent.ReasonHardBounce, MessageID: ref.messageID, Actor: consent.ActorFeedback,
		Detail: fmt.Sprintf("%d soft bounces within %s", n, consent.FormatWindow(st.SoftBounceWindow))})
}

// resolve finds the send r is about, within r's workspace only.
func (f *Feedback) resolve(ctx context.Context, tx pgx.Tx, r Report) (sendRef, error) {
	if t := r.Target; t != nil {
		if t.WorkspaceID != r.WorkspaceID {
			return sendRef{}, ErrUnmatched
		}
		if t.Kind == VERPRecipient {
			return recipientRef(ctx, tx, r.WorkspaceID, 0, t.ID)
		}
		return messageRef(ctx, tx, `seq = $2`, r.WorkspaceID, t.ID)
	}
	if r.MessageID != "" {
		mid := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(r.MessageID), "<"), ">")
		if cid, rid, ok := campaigns.ParseMessageID(f.Consent.Keys, mid); ok {
			ref, err := recipientRef(ctx, tx, r.WorkspaceID, cid, rid)
			if !errors.Is(err, ErrUnmatched) {
				return ref, err
			}
		} else if utf8.ValidString(mid) && len(mid) <= 998 {
			ref, err := messageRef(ctx, tx, `message_id = $2`, r.WorkspaceID, mid)
			if !errors.Is(err, ErrUnmatched) {
				return ref, err
			}
		}
	}
	if r.Address != "" {
		return addressRef(ctx, tx, r.WorkspaceID, r.Address)
	}
	return sendRef{}, ErrUnmatched
}

// recipientRef finds a campaign recipient row of the workspace (and of campaignID, unless 0).
func recipientRef(ctx context.Context, tx pgx.Tx, workspaceID, campaignID, recipientID int64) (sendRef, error) {
	var ref sendRef
	var contactID int64
	err := tx.QueryRow(ctx, `SELECT cr.campaign_id, cr.contact_id, cr.address FROM campaign_recipients cr
		JOIN campaigns c ON c.id = cr.campaign_id
		WHERE cr.id = $2 AND c.workspace_id = $1 AND ($3 = 0 OR cr.campaign_id = $3)`,
		workspaceID, recipientID, campaignID).Scan(&ref.campaignID, &contactID, &ref.address)
	if errors.Is(err, pgx.ErrNoRows) {
		return ref, ErrUnmatched
	}
	if err != nil {
		return ref, fmt.Errorf("find campaign recipient: %w", err)
	}
	ref.recipientID, ref.contactIDs = recipientID, []int64{contactID}
	return ref, nil
}

// messageRef finds a message of the workspace by where ($2 its argument).
func messageRef(ctx context.Context, tx pgx.Tx, where string, workspaceID int64, arg any) (sendRef, error) {
	var ref sendRef
	var id string
	var contactID *int64
	err := tx.QueryRow(ctx, `SELECT id::text, contact_id, to_address FROM messages WHERE workspace_id = $1 AND `+where,
		workspaceID, arg).Scan(&id, &contactID, &ref.address)
	if errors.Is(err, pgx.ErrNoRows) {
		return ref, ErrUnmatched
	}
	if err != nil {
		return ref, fmt.Errorf("find message: %w", err)
	}
	ref.messageID = &id
	if contactID != nil {
		ref.contactIDs = []int64{*contactID}
	}
	return ref, nil
}

// addressRef matches a report by its address alone: the workspace's contacts holding it.
func addressRef(ctx context.Context, tx pgx.Tx, workspaceID int64, address string) (sendRef, error) {
	addr, err := contacts.NormalizeAddress(address)
	if err != nil {
		return sendRef{}, ErrUnmatched
	}
	rows, err := tx.Query(ctx, `SELECT id FROM contacts WHERE workspace_id = $1 AND email = $2 ORDER BY id LIMIT $3`,
		workspaceID, addr, maxAddressContacts)
	if err != nil {
		return sendRef{}, fmt.Errorf("find contacts by address: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return sendRef{}, fmt.Errorf("find contacts by address: %w", err)
	}
	return sendRef{address: addr, contactIDs: ids}, nil
}

// feedbackLockKey is the advisory lock key of an address's feedback in a workspace.
func feedbackLockKey(workspaceID int64, hash []byte) int64 {
	h := sha256.New()
	h.Write([]byte("herald/feedback/"))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(workspaceID)))
	h.Write(hash)
	return int64(binary.BigEndian.Uint64(h.Sum(nil)[:8]))
}

// addressLike matches what looks like an email address in a diagnostic text.
var addressLike = regexp.MustCompile(`[^\s<>()\[\]"',;:]+@[^\s<>()\[\]"',;:]+`)

// redactAddresses replaces the addresses a diagnostic quotes ("550 5.1.1 <a@b>: unknown user")
// by "[address]": feedback rows keep the address only as its keyed hash.
func redactAddresses(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	return addressLike.ReplaceAllString(s, "[address]")
}

// clean makes s printable single-line UTF-8 of at most max bytes: control characters become
// spaces, runs of spaces one, invalid bytes are dropped.
func clean(s string, max int) string {
	var b strings.Builder
	space := false
	for _, c := range strings.ToValidUTF8(s, "") {
		if c < 0x20 || c == 0x7f || c == ' ' {
			space = true
			continue
		}
		sep := 0
		if space && b.Len() > 0 {
			sep = 1
		}
		if b.Len()+sep+utf8.RuneLen(c) > max {
			break
		}
		if sep == 1 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(c)
	}
	return b.String()
}
