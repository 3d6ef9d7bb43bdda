package consent

import (
	"context"
	"fmt"

	"herald/internal/db"
)

// TrackingPurpose is the name of the ledger purpose (kind 'tracking') that governs open and click
// tracking: the pixel and rewritten links, kept apart from marketing consent. Its consent_state
// rows say what each contact chose.
const TrackingPurpose = "tracking"

// Tracking modes of a workspace (consent_settings.tracking_mode).
const (
	TrackingOptIn  = "opt_in"  // tracked only after the contact granted the tracking purpose (default)
	TrackingOptOut = "opt_out" // tracked unless the contact withdrew it
	TrackingOff    = "off"     // never tracked
)

// TrackingPolicy is a workspace's tracking settings.
type TrackingPolicy struct {
	Mode   string // TrackingOptIn, TrackingOptOut or TrackingOff
	FullIP bool   // keep whole IP addresses instead of /24 (IPv4) and /48 (IPv6)
}

// trackingModeCTE is the workspace's ($1) tracking mode, opt_in when it has no settings row.
const trackingModeCTE = `mode AS (
		SELECT coalesce((SELECT tracking_mode FROM consent_settings WHERE workspace_id = $1), 'opt_in') AS m
	)`

// trackingRuleSQL is the one statement of who may be tracked, over the contact's row (c) and
// its state for the tracking purpose (tr), with the mode of trackingModeCTE and the time $3:
// never a restricted contact; in opt_in mode only a current, unexpired grant; in opt_out mode
// anyone who has not withdrawn; in off mode nobody. TrackingAllowed and DecideBatch both use it,
// so a campaign's tracking and the tracking endpoints' re-check agree.
const trackingRuleSQL = `(c.restricted_at IS NULL AND CASE (SELECT m FROM mode)
		WHEN 'off' THEN false
		WHEN 'opt_out' THEN coalesce(tr.status, 'granted') = 'granted'
		ELSE coalesce(tr.status = 'granted' AND (tr.expires_at IS NULL OR tr.expires_at > $3), false)
	END)`

// trackingAllowedSQL answers per contact (in the order of $2) whether tracking is allowed.
const trackingAllowedSQL = `
	WITH ` + trackingModeCTE + `
	SELECT ` + trackingRuleSQL + `
	FROM unnest($2::bigint[]) WITH ORDINALITY AS r (contact_id, i)
	LEFT JOIN consent_state tr ON tr.workspace_id = $1 AND tr.contact_id = r.contact_id AND tr.purpose = 'tracking'
	LEFT JOIN contacts c ON c.workspace_id = $1 AND c.id = r.contact_id
	ORDER BY r.i`

// TrackingAllowed answers, for each contact of one workspace (allowed[i] for contactIDs[i]),
// whether its messages may carry the open pixel and click-tracking links, in one round trip. In
// opt-in mode an expired grant no longer counts (the ledger gives withdrawals no expiry, so in
// opt-out mode only a withdrawal stops tracking).
func (s *Service) TrackingAllowed(ctx context.Context, q db.Querier, workspaceID int64, contactIDs []int64) ([]bool, error) {
	out := make([]bool, 0, len(contactIDs))
	if len(contactIDs) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, trackingAllowedSQL, workspaceID, contactIDs, s.now())
	if err != nil {
		return nil, fmt.Errorf("tracking decision: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var ok bool
		if err := rows.Scan(&ok); err != nil {
			return nil, fmt.Errorf("tracking decision: %w", err)
		}
		out = append(out, ok)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("tracking decision: %w", err)
	}
	if len(out) != len(contactIDs) {
		return nil, fmt.Errorf("tracking decision: %d answers for %d contacts", len(out), len(contactIDs))
	}
	return out, nil
}

// TrackingPolicies returns the tracking settings of each workspace asked (defaults for one with
// no settings row), in one round trip.
func (s *Service) TrackingPolicies(ctx context.Context, q db.Querier, workspaceIDs []int64) (map[int64]TrackingPolicy, error) {
	out := make(map[int64]TrackingPolicy, len(workspaceIDs))
	for _, id := range workspaceIDs {
		out[id] = TrackingPolicy{Mode: TrackingOptIn}
	}
	rows, err := q.Query(ctx, `SELECT workspace_id, tracking_mode, tracking_full_ip FROM consent_settings
		WHERE workspace_id = ANY ($1)`, workspaceIDs)
	if err != nil {
		return nil, fmt.Errorf("tracking settings: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var p TrackingPolicy
		if err := rows.Scan(&id, &p.Mode, &p.FullIP); err != nil {
			return nil, fmt.Errorf("tracking settings: %w", err)
		}
		out[id] = p
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("tracking settings: %w", err)
	}
	return out, nil
}
