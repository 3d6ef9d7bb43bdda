package consent

import (
	"context"
	"encoding/json"
	"fmt"

	"herald/internal/db"
)

// Audit is one entry of the workspace's append-only audit log of privileged actions. Target and
// Detail must not hold personal data in clear (use ids or keyed hashes).
type Audit struct {
	WorkspaceID int64
	Actor       string // e.g. "api_key:<id>"
	Action      string // e.g. "suppression.delete"
	Target      string
	Detail      map[string]any
}

// AuditWrite appends a to audit_log. Call it in the transaction of the action it records, so
// that neither commits without the other.
func AuditWrite(ctx context.Context, q db.Querier, a Audit) error {
	detail := a.Detail
	if detail == nil {
		detail = map[string]any{}
	}
	b, err := json.Marshal(detail)
	if err != nil {
		return fmt.Errorf("write audit: %w", err)
	}
	if _, err := q.Exec(ctx, `INSERT INTO audit_log (workspace_id, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)`,
		a.WorkspaceID, a.Actor, a.Action, a.Target, b); err != nil {
		return fmt.Errorf("write audit: %w", err)
	}
	return nil
}
