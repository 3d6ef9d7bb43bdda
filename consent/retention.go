package consent

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"herald/internal/db"
)

// RetentionPolicy is how long a workspace keeps each kind of personal data, in days (see
// RetentionWorker for what each removes). A workspace without a stored policy has the defaults of
// the configuration.
type RetentionPolicy struct {
	// OptedOutDays: the marketing data of a contact who opted out of all marketing is removed
	// this many days after the opt-out.
	OptedOutDays int `json:"opted_out_days"`
	// TrackingDays: tracking events older than this are removed.
	TrackingDays int `json:"tracking_days"`
	// BodyDays: the rendered content of a final message is emptied this many days after it was
	// sent (or created, if it never was).
	BodyDays int `json:"body_days"`
	// DeletionGraceDays: a deleted workspace is purged this many days after its deletion.
	DeletionGraceDays int `json:"deletion_grace_days"`
}

// Defaults and upper bounds of a retention policy: the bounds are what the privacy policy
// promises (marketing data within 30 days of an opt-out, tracking events 13 months, bodies 30
// days, a deleted workspace within 30 days). Every field is at least 1.
const (
	DefaultOptedOutDays      = 30
	DefaultTrackingDays      = 395
	DefaultBodyDays          = 30
	DefaultDeletionGraceDays = 7
	MaxOptedOutDays          = 30
	MaxTrackingDays          = 395
	MaxBodyDays              = 30
	MaxDeletionGraceDays     = 30
)

// DefaultRetentionPolicy is the policy of the privacy policy's promises.
func DefaultRetentionPolicy() RetentionPolicy {
	return RetentionPolicy{OptedOutDays: DefaultOptedOutDays, TrackingDays: DefaultTrackingDays,
		BodyDays: DefaultBodyDays, DeletionGraceDays: DefaultDeletionGraceDays}
}

// Validate checks every field against its bounds; a fault is a *FieldError naming the field.
func (p RetentionPolicy) Validate() error {
	for _, f := range []struct {
		name   string
		v, max int
	}{
		{"opted_out_days", p.OptedOutDays, MaxOptedOutDays},
		{"tracking_days", p.TrackingDays, MaxTrackingDays},
		{"body_days", p.BodyDays, MaxBodyDays},
		{"deletion_grace_days", p.DeletionGraceDays, MaxDeletionGraceDays},
	} {
		if f.v < 1 || f.v > f.max {
			return fieldErr(f.name, "must be a whole number of days from 1 to "+strconv.Itoa(f.max))
		}
	}
	return nil
}

// days is n days as a duration.
func days(n int) time.Duration { return time.Duration(n) * 24 * time.Hour }

// StoredRetentionPolicy is a workspace's policy and whether it is its own (Stored) or the
// defaults.
type StoredRetentionPolicy struct {
	RetentionPolicy
	Stored    bool
	UpdatedAt *time.Time
}

// RetentionPolicyGet returns the workspace's policy, or defaults when it has none.
func RetentionPolicyGet(ctx context.Context, q db.Querier, workspaceID int64, defaults RetentionPolicy) (StoredRetentionPolicy, error) {
	var s StoredRetentionPolicy
	var at time.Time
	err := q.QueryRow(ctx, `SELECT opted_out_days, tracking_days, body_days, deletion_grace_days, updated_at
		FROM retention_policies WHERE workspace_id = $1`, workspaceID).
		Scan(&s.OptedOutDays, &s.TrackingDays, &s.BodyDays, &s.DeletionGraceDays, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return StoredRetentionPolicy{RetentionPolicy: defaults}, nil
	}
	if err != nil {
		return s, fmt.Errorf("get retention policy: %w", err)
	}
	s.Stored, s.UpdatedAt = true, &at
	return s, nil
}

// RetentionPolicyPut stores the workspace's policy (validated first).
func RetentionPolicyPut(ctx context.Context, q db.Querier, workspaceID int64, p RetentionPolicy, now time.Time) error {
	if err := p.Validate(); err != nil {
		return err
	}
	_, err := q.Exec(ctx, `
		INSERT INTO retention_policies (workspace_id, opted_out_days, tracking_days, body_days, deletion_grace_days, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (workspace_id) DO UPDATE SET opted_out_days = EXCLUDED.opted_out_days,
			tracking_days = EXCLUDED.tracking_days, body_days = EXCLUDED.body_days,
			deletion_grace_days = EXCLUDED.deletion_grace_days, updated_at = EXCLUDED.updated_at`,
		workspaceID, p.OptedOutDays, p.TrackingDays, p.BodyDays, p.DeletionGraceDays, now)
	if err != nil {
		return fmt.Errorf("put retention policy: %w", err)
	}
	return nil
}

// What the retention job removes: the values of herald_retention_removed_total's label.
const (
	RemovedOptedOutEvents     = "opted_out_tracking_events" // tracking events of opted-out contacts
	RemovedOptedOutRecipients = "opted_out_recipients"      // campaign recipient rows emptied of address and SMTP reply
	RemovedExpiredEvents      = "expired_tracking_events"   // tracking events past tracking_days
	RemovedMessageBodies      = "message_bodies"            // messages emptied of their rendered content
	RemovedWorkspaces         = "deleted_workspaces"        // deleted workspaces purged
	RemovedWorkspaceRows      = "deleted_workspace_rows"    // rows deleted in batches before a workspace's final cascade
)

// RetentionMetrics counts what the retention job removed.
type RetentionMetrics struct {
	// Removed is herald_retention_removed_total{what}.
	Removed *prometheus.CounterVec
}

// NewRetentionMetrics registers the retention metrics with reg.
func NewRetentionMetrics(reg prometheus.Registerer) *RetentionMetrics {
	m := &RetentionMetrics{Removed: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_retention_removed_total",
		Help: "Rows removed or emptied by the retention job, by what (see README, Retention).",
	}, []string{"what"})}
	reg.MustRegister(m.Removed)
	for _, w := range []string{RemovedOptedOutEvents, RemovedOptedOutRecipients, RemovedExpiredEvents,
		RemovedMessageBodies, RemovedWorkspaces, RemovedWorkspaceRows} {
		m.Removed.WithLabelValues(w)
	}
	return m
}
