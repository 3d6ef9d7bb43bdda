package consent

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/internal/contacts"
	"herald/internal/db"
)

// Settings are a workspace's consent settings: the public key of its double opt-in form, the
// privacy notice the preference centre links to, the sender of confirmation emails, how open and
// click tracking is consented to, and when soft bounces suppress an address.
type Settings struct {
	WorkspaceID int64
	FormKey     string
	PrivacyURL  string
	ConfirmFrom string
	// TrackingMode is TrackingOptIn (the default), TrackingOptOut or TrackingOff.
	TrackingMode string
	// TrackingFullIP keeps whole IP addresses in tracking events instead of /24 and /48.
	TrackingFullIP bool
	// SoftBounceLimit soft bounces within SoftBounceWindow suppress an address (1-100, default 3).
	SoftBounceLimit int
	// SoftBounceWindow is from one hour to 90 days (default 7 days), in whole seconds.
	SoftBounceWindow time.Duration
}

// Defaults and bounds of the settings (the table's defaults and CHECK constraints agree).
const (
	DefaultSoftBounceLimit  = 3
	DefaultSoftBounceWindow = 7 * 24 * time.Hour
	MaxSoftBounceLimit      = 100
	MinSoftBounceWindow     = time.Hour
	MaxSoftBounceWindow     = 90 * 24 * time.Hour
)

// The window is read and written as whole seconds, so that no interval arithmetic (months,
// days) reaches Go.
const settingsColumns = `workspace_id, form_key, privacy_url, confirm_from, tracking_mode, tracking_full_ip,
	soft_bounce_limit, extract(epoch FROM soft_bounce_window)::bigint`

func scanSettings(row pgx.Row) (Settings, error) {
	var s Settings
	var window int64
	err := row.Scan(&s.WorkspaceID, &s.FormKey, &s.PrivacyURL, &s.ConfirmFrom, &s.TrackingMode, &s.TrackingFullIP,
		&s.SoftBounceLimit, &window)
	s.SoftBounceWindow = time.Duration(window) * time.Second
	return s, err
}

// FormatWindow writes a soft bounce window as the API shows it: a Go duration in hours when it
// is a whole number of them ("168h"), else in full ("90m0s").
func FormatWindow(d time.Duration) string {
	if d%time.Hour == 0 {
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	}
	return d.String()
}

// ParseWindow reads a soft bounce window: a Go duration ("168h", "36h30m") from one hour to 90
// days, in whole seconds. A fault is a *FieldError for soft_bounce_window.
func ParseWindow(s string) (time.Duration, error) {
	const msg = `must be a duration from 1h to 2160h (90 days) in whole seconds, written like "168h" or "36h30m"`
	if !printable(s, 32) {
		return 0, fieldErr("soft_bounce_window", msg)
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < MinSoftBounceWindow || d > MaxSoftBounceWindow || d%time.Second != 0 {
		return 0, fieldErr("soft_bounce_window", msg)
	}
	return d, nil
}

// SettingsGet returns the workspace's settings, creating the row (and so its form key, generated
// by the table's default) on first use.
func SettingsGet(ctx context.Context, q db.Querier, workspaceID int64) (Settings, error) {
	// The INSERT returns nothing when the row exists, hence the UNION with the plain SELECT; in one
	// statement both see the same snapshot, so a concurrent first call may race the insert, which
	// ON CONFLICT absorbs and the retry below reads.
	const query = `
		WITH ins AS (
			INSERT INTO consent_settings (workspace_id) VALUES ($1)
			ON CONFLICT (workspace_id) DO NOTHING
			RETURNING *)
		SELECT ` + settingsColumns + ` FROM ins
		UNION ALL
		SELECT ` + settingsColumns + ` FROM consent_settings WHERE workspace_id = $1`
	for range 2 {
		s, err := scanSettings(q.QueryRow(ctx, query, workspaceID))
		if errors.Is(err, pgx.ErrNoRows) {
			continue // another transaction inserted it after our snapshot was taken
		}
		if err != nil {
			return s, fmt.Errorf("get consent settings: %w", err)
		}
		return s, nil
	}
	return Settings{}, fmt.Errorf("get consent settings: row of workspace %d not visible", workspaceID)
}

// SettingsPut validates and stores the workspace's settings (the form key is never changed) and
// returns the stored settings. Zero values of the tracking mode and the soft bounce limit and
// window mean their defaults. An invalid field is a *FieldError.
func SettingsPut(ctx context.Context, q db.Querier, s Settings) (Settings, error) {
	switch s.TrackingMode {
	case "":
		s.TrackingMode = TrackingOptIn
	case TrackingOptIn, TrackingOptOut, TrackingOff:
	default:
		return s, fieldErr("tracking_mode", "must be opt_in, opt_out or off")
	}
	switch {
	case s.SoftBounceLimit == 0:
		s.SoftBounceLimit = DefaultSoftBounceLimit
	case s.SoftBounceLimit < 1 || s.SoftBounceLimit > MaxSoftBounceLimit:
		return s, fieldErr("soft_bounce_limit", fmt.Sprintf("must be a whole number from 1 to %d", MaxSoftBounceLimit))
	}
	switch {
	case s.SoftBounceWindow == 0:
		s.SoftBounceWindow = DefaultSoftBounceWindow
	case s.SoftBounceWindow < MinSoftBounceWindow || s.SoftBounceWindow > MaxSoftBounceWindow || s.SoftBounceWindow%time.Second != 0:
		return s, fieldErr("soft_bounce_window", "must be from 1h to 2160h (90 days) in whole seconds")
	}
	if s.PrivacyURL != "" {
		u, err := url.Parse(s.PrivacyURL)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || !printable(s.PrivacyURL, 2000) {
			return s, fieldErr("privacy_url", "must be an https URL (at most 2000 characters) or empty")
		}
	}
	if s.ConfirmFrom != "" {
		addr, err := contacts.NormalizeAddress(s.ConfirmFrom)
		if err != nil {
			return s, fieldErr("confirm_from", "must be a valid email address: "+err.Error())
		}
		s.ConfirmFrom = addr
	}
	out, err := scanSettings(q.QueryRow(ctx, `
		INSERT INTO consent_settings (workspace_id, privacy_url, confirm_from, tracking_mode, tracking_full_ip,
			soft_bounce_limit, soft_bounce_window)
		VALUES ($1, $2, $3, $4, $5, $6, make_interval(secs => $7))
		ON CONFLICT (workspace_id) DO UPDATE SET privacy_url = EXCLUDED.privacy_url,
			confirm_from = EXCLUDED.confirm_from, tracking_mode = EXCLUDED.tracking_mode,
			tracking_full_ip = EXCLUDED.tracking_full_ip, soft_bounce_limit = EXCLUDED.soft_bounce_limit,
			soft_bounce_window = EXCLUDED.soft_bounce_window, updated_at = now()
		RETURNING `+settingsColumns, s.WorkspaceID, s.PrivacyURL, s.ConfirmFrom, s.TrackingMode, s.TrackingFullIP,
		s.SoftBounceLimit, int64(s.SoftBounceWindow/time.Second)))
	if err != nil {
		return out, fmt.Errorf("put consent settings: %w", err)
	}
	return out, nil
}

// SettingsByFormKey returns the settings holding formKey, or an error wrapping db.ErrNotFound.
func SettingsByFormKey(ctx context.Context, q db.Querier, formKey string) (Settings, error) {
	s, err := scanSettings(q.QueryRow(ctx, `SELECT `+settingsColumns+` FROM consent_settings WHERE form_key = $1`, formKey))
	if errors.Is(err, pgx.ErrNoRows) {
		return s, fmt.Errorf("consent settings by form key: %w", db.ErrNotFound)
	}
	if err != nil {
		return s, fmt.Errorf("consent settings by form key: %w", err)
	}
	return s, nil
}
