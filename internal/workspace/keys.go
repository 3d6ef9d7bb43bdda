package workspace

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"herald/internal/db"
)

// Scopes an API key may hold.
const (
	ScopeMessagesSend   = "messages:send"
	ScopeContactsWrite  = "contacts:write"
	ScopeCampaignsWrite = "campaigns:write"
	ScopeAdmin          = "admin"
	// ScopePrivacy reads and handles data-subject requests (/v1/privacy-requests) without the
	// rest of admin.
	ScopePrivacy = "privacy"
)

// AllScopes lists every scope, for validation and help text.
var AllScopes = []string{ScopeMessagesSend, ScopeContactsWrite, ScopeCampaignsWrite, ScopeAdmin, ScopePrivacy}

// ActorCLI is the audit actor of keys created from the command line (herald keys create).
const ActorCLI = "cli"

// keyPrefix starts every key, so leaked keys are easy to recognise by secret scanners.
const keyPrefix = "hrld_"

// ErrBadKey is returned by Authenticate for a missing, unknown, malformed or revoked key.
var ErrBadKey = errors.New("invalid API key")

// Principal is what an authenticated request acts as.
type Principal struct {
	WorkspaceID   int64
	WorkspaceName string
	KeyID         int64
	Scopes        []string
}

// Actor names the principal's key as the audit log, the ledger and the privacy requests name it.
func (p Principal) Actor() string { return "api_key:" + strconv.FormatInt(p.KeyID, 10) }

// Has reports whether the principal holds scope (admin holds every scope).
func (p Principal) Has(scope string) bool {
	return slices.Contains(p.Scopes, scope) || slices.Contains(p.Scopes, ScopeAdmin)
}

// ParseScopes splits a comma-separated scope list and checks each name.
func ParseScopes(s string) ([]string, error) {
	var out []string
	for _, sc := range strings.Split(s, ",") {
		sc = strings.TrimSpace(sc)
		if sc == "" {
			continue
		}
		if !slices.Contains(AllScopes, sc) {
			return nil, fmt.Errorf("unknown scope %q (known: %s)", sc, strings.Join(AllScopes, ", "))
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no scopes given (known: %s)", strings.Join(AllScopes, ", "))
	}
	return out, nil
}

// CreateKey makes a new random key for the workspace and returns it in clear, attributing its
// creation to ActorCLI in the audit log. Only its SHA-256 is stored: the key cannot be shown again.
func CreateKey(ctx context.Context, q db.Querier, workspaceID int64, scopes []string) (string, error) {
	return CreateKeyAs(ctx, q, workspaceID, scopes, ActorCLI)
}

// apiKeyCreate inserts a key and, in the same statement, its audit entry (action api_key.create,
// target api_key:ID, the scopes and the key's public prefix; never the key).
const apiKeyCreate = `
WITH k AS (
	INSERT INTO api_keys (workspace_id, prefix, hash, scopes) VALUES ($1, $2, $3, $4)
	RETURNING id, workspace_id, prefix, scopes
)
INSERT INTO audit_log (workspace_id, actor, action, target, detail)
SELECT workspace_id, $5, 'api_key.create', 'api_key:' || id, jsonb_build_object('scopes', scopes, 'prefix', prefix)
FROM k`

// CreateKeyAs is CreateKey with the audit log naming actor as the key's creator.
func CreateKeyAs(ctx context.Context, q db.Querier, workspaceID int64, scopes []string, actor string) (string, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("create key: %w", err)
	}
	key := keyPrefix + base64.RawURLEncoding.EncodeToString(raw)
	sum := sha256.Sum256([]byte(key))
	if _, err := q.Exec(ctx, apiKeyCreate, workspaceID, key[:len(keyPrefix)+6], sum[:], scopes, actor); err != nil {
		return "", fmt.Errorf("create key: %w", err)
	}
	return key, nil
}

// Authenticate looks the key up by its hash and returns its principal. A revoked key, or a key
// of a deleted workspace, is ErrBadKey.
func Authenticate(ctx context.Context, q db.Querier, key string) (Principal, error) {
	if !strings.HasPrefix(key, keyPrefix) || len(key) > 128 {
		return Principal{}, ErrBadKey
	}
	sum := sha256.Sum256([]byte(key))
	var p Principal
	err := q.QueryRow(ctx, `
		SELECT k.id, k.workspace_id, w.name, k.scopes
		FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id
		WHERE k.hash = $1 AND k.revoked_at IS NULL AND w.deleted_at IS NULL`, sum[:]).Scan(&p.KeyID, &p.WorkspaceID, &p.WorkspaceName, &p.Scopes)
	if errors.Is(err, pgx.ErrNoRows) {
		return Principal{}, ErrBadKey
	}
	if err != nil {
		return Principal{}, fmt.Errorf("authenticate: %w", err)
	}
	return p, nil
}

// ErrNoSuchKey is returned by RevokeKey for a key id the workspace does not have.
var ErrNoSuchKey = errors.New("no such API key in this workspace")

// apiKeyRevoke revokes a key of the workspace and, in the same statement, writes its audit
// entry (action api_key.revoke, target api_key:ID); a key revoked before is left as it is and
// audited again only if this call revoked it.
const apiKeyRevoke = `
WITH k AS (
	UPDATE api_keys SET revoked_at = now() WHERE workspace_id = $1 AND id = $2 AND revoked_at IS NULL
	RETURNING id, workspace_id, prefix
), a AS (
	INSERT INTO audit_log (workspace_id, actor, action, target, detail)
	SELECT workspace_id, $3, 'api_key.revoke', 'api_key:' || id, jsonb_build_object('prefix', prefix) FROM k
)
SELECT (SELECT count(*) FROM k), EXISTS (SELECT 1 FROM api_keys WHERE workspace_id = $1 AND id = $2)`

// RevokeKey revokes the workspace's key id on behalf of actor: processes stop accepting it within
// HERALD_KEY_CACHE_TTL (see Authenticator). It reports whether this call revoked it (false for
// a key already revoked); ErrNoSuchKey for an id the workspace does not have.
func RevokeKey(ctx context.Context, q db.Querier, workspaceID, keyID int64, actor string) (bool, error) {
	var revoked int64
	var exists bool
	if err := q.QueryRow(ctx, apiKeyRevoke, workspaceID, keyID, actor).Scan(&revoked, &exists); err != nil {
		return false, fmt.Errorf("revoke key: %w", err)
	}
	if !exists {
		return false, ErrNoSuchKey
	}
	return revoked == 1, nil
}
