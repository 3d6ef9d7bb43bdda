package tracking

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"herald/consent"
	"herald/internal/db"
	"herald/internal/httpx"
	"herald/internal/workspace"
)

// WebhookSettings are a workspace's credentials for the provider webhooks.
type WebhookSettings struct {
	WorkspaceID int64
	// SendGridPublicKey is SendGrid's verification key as configured (base64 DER or PEM).
	SendGridPublicKey string
	PostmarkUser      string
	// postmarkPasswordHash is SHA-256 of the Postmark basic-auth password (nil: none set).
	postmarkPasswordHash []byte
	SESTopicARNs         []string
}

// Limits of the settings.
const (
	maxTopicARNs        = 20
	minPostmarkPassword = 16
)

var topicARNRE = regexp.MustCompile(`^arn:aws[a-z-]*:sns:[a-z0-9-]{1,32}:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$`)

// WebhookSettingsGet returns the workspace's webhook settings (empty ones when none are stored).
func WebhookSettingsGet(ctx context.Context, q db.Querier, workspaceID int64) (WebhookSettings, error) {
	s := WebhookSettings{WorkspaceID: workspaceID}
	err := q.QueryRow(ctx, `SELECT sendgrid_public_key, postmark_user, postmark_password_hash, ses_topic_arns
		FROM feedback_webhooks WHERE workspace_id = $1`, workspaceID).
		Scan(&s.SendGridPublicKey, &s.PostmarkUser, &s.postmarkPasswordHash, &s.SESTopicARNs)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return s, fmt.Errorf("get webhook settings: %w", err)
	}
	return s, nil
}

// sendGridKey parses the stored SendGrid verification key: an ECDSA P-256 public key, as the
// base64 of its DER (what SendGrid's settings page shows) or as PEM.
func sendGridKey(s string) (*ecdsa.PublicKey, error) {
	s = strings.TrimSpace(s)
	var der []byte
	if blk, _ := pem.Decode([]byte(s)); blk != nil {
		der = blk.Bytes
	} else {
		var err error
		if der, err = base64.StdEncoding.DecodeString(s); err != nil {
			return nil, errors.New("not base64 or PEM")
		}
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, errors.New("not a public key")
	}
	ek, ok := k.(*ecdsa.PublicKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, errors.New("not an ECDSA P-256 public key")
	}
	return ek, nil
}

// postmarkAuthOK compares basic-auth credentials with the stored ones in constant time.
func (s WebhookSettings) postmarkAuthOK(user, password string) bool {
	if s.PostmarkUser == "" || len(s.postmarkPasswordHash) != sha256.Size {
		return false
	}
	h := sha256.Sum256([]byte(password))
	u1 := sha256.Sum256([]byte(user))
	u2 := sha256.Sum256([]byte(s.PostmarkUser))
	return subtle.ConstantTimeCompare(u1[:], u2[:])&subtle.ConstantTimeCompare(h[:], s.postmarkPasswordHash) == 1
}

// settingsBody is the body of PUT /v1/feedback/settings. PostmarkPassword null keeps the stored
// password, "" removes it.
type settingsBody struct {
	SendGridPublicKey string   `json:"sendgrid_public_key"`
	PostmarkUser      string   `json:"postmark_user"`
	PostmarkPassword  *string  `json:"postmark_password"`
	SESTopicARNs      []string `json:"ses_topic_arns"`
}

// settingsView is what GET and PUT answer: never the password, only whether one is set, and the
// workspace's webhook URLs.
type settingsView struct {
	SendGridPublicKey   string            `json:"sendgrid_public_key"`
	PostmarkUser        string            `json:"postmark_user"`
	PostmarkPasswordSet bool              `json:"postmark_password_set"`
	SESTopicARNs        []string          `json:"ses_topic_arns"`
	WebhookURLs         map[string]string `json:"webhook_urls"`
}

func (h *WebhookHandler) view(s WebhookSettings) settingsView {
	key := WebhookKey(h.Keys, s.WorkspaceID)
	arns := s.SESTopicARNs
	if arns == nil {
		arns = []string{}
	}
	return settingsView{SendGridPublicKey: s.SendGridPublicKey, PostmarkUser: s.PostmarkUser,
		PostmarkPasswordSet: len(s.postmarkPasswordHash) > 0, SESTopicARNs: arns,
		WebhookURLs: map[string]string{
			SourceSES:      h.BaseURL + "/hooks/ses/" + key,
			SourceSendGrid: h.BaseURL + "/hooks/sendgrid/" + key,
			SourcePostmark: h.BaseURL + "/hooks/postmark/" + key,
		}}
}

func (h *WebhookHandler) settingsGet(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	s, err := WebhookSettingsGet(r.Context(), h.DB, p.WorkspaceID)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, h.view(s))
	return nil
}

func (h *WebhookHandler) settingsPut(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p := workspace.MustFromContext(ctx)
	var body settingsBody
	if err := httpx.DecodeJSON(w, r, h.maxSettingsBody(), &body); err != nil {
		return err
	}
	if err := body.validate(); err != nil {
		return err
	}
	var hash []byte
	if body.PostmarkPassword != nil && *body.PostmarkPassword != "" {
		sum := sha256.Sum256([]byte(*body.PostmarkPassword))
		hash = sum[:]
	}
	if body.SESTopicARNs == nil {
		body.SESTopicARNs = []string{}
	}
	var s WebhookSettings
	err := pgx.BeginFunc(ctx, h.DB, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			INSERT INTO feedback_webhooks (workspace_id, sendgrid_public_key, postmark_user, postmark_password_hash, ses_topic_arns)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (workspace_id) DO UPDATE SET sendgrid_public_key = EXCLUDED.sendgrid_public_key,
				postmark_user = EXCLUDED.postmark_user,
				postmark_password_hash = CASE WHEN $6 THEN feedback_webhooks.postmark_password_hash ELSE EXCLUDED.postmark_password_hash END,
				ses_topic_arns = EXCLUDED.ses_topic_arns, updated_at = now()`,
			p.WorkspaceID, strings.TrimSpace(body.SendGridPublicKey), body.PostmarkUser, hash, body.SESTopicARNs,
			body.PostmarkPassword == nil)
		if err != nil {
			return fmt.Errorf("put webhook settings: %w", err)
		}
		if s, err = WebhookSettingsGet(ctx, tx, p.WorkspaceID); err != nil {
			return err
		}
		return consent.AuditWrite(ctx, tx, consent.Audit{WorkspaceID: p.WorkspaceID,
			Actor: "api_key:" + strconv.FormatInt(p.KeyID, 10), Action: "feedback_settings.put",
			Target: "workspace:" + strconv.FormatInt(p.WorkspaceID, 10),
			Detail: map[string]any{"sendgrid_key_set": s.SendGridPublicKey != "", "postmark_user": s.PostmarkUser,
				"postmark_password_changed": body.PostmarkPassword != nil, "ses_topic_arns": s.SESTopicARNs}})
	})
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, h.view(s))
	return nil
}

func (b *settingsBody) validate() error {
	if b.SendGridPublicKey != "" {
		if len(b.SendGridPublicKey) > 4096 {
			return httpx.Invalid("sendgrid_public_key", "at most 4096 characters")
		}
		if _, err := sendGridKey(b.SendGridPublicKey); err != nil {
			return httpx.Invalid("sendgrid_public_key", "must be SendGrid's verification key (base64 or PEM of an ECDSA P-256 public key): "+err.Error())
		}
	}
	if b.PostmarkUser != "" && !printableText(b.PostmarkUser, 100) || strings.Contains(b.PostmarkUser, ":") {
		return httpx.Invalid("postmark_user", "at most 100 printable characters, without ':'")
	}
	if pw := b.PostmarkPassword; pw != nil && *pw != "" {
		if len(*pw) < minPostmarkPassword || !printableText(*pw, 200) {
			return httpx.Invalid("postmark_password", fmt.Sprintf("%d to 200 printable characters of random secret", minPostmarkPassword))
		}
		if b.PostmarkUser == "" {
			return httpx.Invalid("postmark_user", "required with a password")
		}
	}
	if len(b.SESTopicARNs) > maxTopicARNs {
		return httpx.Invalid("ses_topic_arns", fmt.Sprintf("at most %d topics", maxTopicARNs))
	}
	for _, a := range b.SESTopicARNs {
		if !topicARNRE.MatchString(a) {
			return httpx.Invalid("ses_topic_arns", "each must be an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)")
		}
	}
	return nil
}

func printableText(s string, max int) bool {
	if len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}
