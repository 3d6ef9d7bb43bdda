package consent

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5"

	"herald/internal/contacts"
	"herald/internal/db"
)

// Settings are a workspace's consent settings: the public key of its double opt-in form, the
// privacy notice the preference centre links to, and the sender of confirmation emails.
type Settings struct {
	WorkspaceID int64  `json:"-"`
	FormKey     string `json:"form_key"`
	PrivacyURL  string `json:"privacy_url"`
	ConfirmFrom string `json:"confirm_from"`
}

const settingsColumns = `workspace_id, form_key, privacy_url, confirm_from`

func scanSettings(row pgx.Row) (Settings, error) {
	var s Settings
	err := row.Scan(&s.WorkspaceID, &s.FormKey, &s.PrivacyURL, &s.ConfirmFrom)
	return s, err
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
			RETURNING ` + settingsColumns + `)
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

// SettingsPut validates and stores the workspace's privacy URL and confirmation sender (the form
// key is never changed) and returns the stored settings. An invalid field is a *FieldError.
func SettingsPut(ctx context.Context, q db.Querier, s Settings) (Settings, error) {
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
		INSERT INTO consent_settings (workspace_id, privacy_url, confirm_from) VALUES ($1, $2, $3)
		ON CONFLICT (workspace_id) DO UPDATE SET privacy_url = EXCLUDED.privacy_url,
			confirm_from = EXCLUDED.confirm_from, updated_at = now()
		RETURNING `+settingsColumns, s.WorkspaceID, s.PrivacyURL, s.ConfirmFrom))
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
