package consent

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"herald/internal/db"
)

// Actions, sources and lawful bases of ledger events.
const (
	ActionGranted   = "granted"
	ActionWithdrawn = "withdrawn"

	SourceAPI              = "api"
	SourceForm             = "form"
	SourceImport           = "import"
	SourcePreferenceCentre = "preference_centre"
	SourceOneClick         = "one_click"
	SourceComplaint        = "complaint"
	SourceAdmin            = "admin"

	BasisConsent   = "consent"
	BasisSoftOptIn = "soft_opt_in"
	BasisContract  = "contract"
)

// Sources and LawfulBases list the accepted values, for validation and error messages.
var (
	Sources     = []string{SourceAPI, SourceForm, SourceImport, SourcePreferenceCentre, SourceOneClick, SourceComplaint, SourceAdmin}
	LawfulBases = []string{BasisConsent, BasisSoftOptIn, BasisContract}
)

// Evidence is the erasable, personal part of an event's proof. It is stored apart from the event
// and enters the hash chain only through a salted commitment.
type Evidence struct {
	IP        string `json:"ip"`
	UserAgent string `json:"user_agent"`
	Address   string `json:"address"`
}

// Event is one entry of the consent ledger.
type Event struct {
	ID            int64
	WorkspaceID   int64
	Seq           int64
	ContactID     int64
	Purpose       string
	Action        string
	Source        string
	LawfulBasis   string
	NoticeVersion int
	Actor         string
	// Proof holds non-personal proof, such as a double opt-in's request id and confirmation time.
	Proof      map[string]string
	OccurredAt time.Time
	RecordedAt time.Time
	ExpiresAt  *time.Time
	// Evidence is nil when it has been erased (or, on input, when there is none).
	Evidence *Evidence

	EvidenceCommitment []byte
	PrevHash           []byte
	Hash               []byte
}

// maxClockSkew is how far in the future an event's occurred_at may lie.
const maxClockSkew = 5 * time.Minute

// validate checks an event given by a caller; the error is client-safe and names the field.
func (e *Event) validate(now time.Time) error {
	switch {
	case e.WorkspaceID == 0 || e.ContactID == 0:
		return fieldErr("contact", "a contact is required")
	case e.Action != ActionGranted && e.Action != ActionWithdrawn:
		return fieldErr("action", "must be granted or withdrawn")
	case !slices.Contains(Sources, e.Source):
		return fieldErr("source", "must be one of "+strings.Join(Sources, ", "))
	case !slices.Contains(LawfulBases, e.LawfulBasis):
		return fieldErr("lawful_basis", "must be one of "+strings.Join(LawfulBases, ", "))
	case e.Actor == "" || !printable(e.Actor, 200):
		return fieldErr("actor", "must be 1-200 printable characters")
	case e.OccurredAt.After(now.Add(maxClockSkew)):
		return fieldErr("occurred_at", "lies in the future")
	case e.ExpiresAt != nil && e.Action != ActionGranted:
		return fieldErr("expires_at", "only a grant can expire")
	case e.ExpiresAt != nil && !e.ExpiresAt.After(e.OccurredAt):
		return fieldErr("expires_at", "must be after occurred_at")
	case len(e.Proof) > 20:
		return fieldErr("proof", "at most 20 entries")
	}
	for k, v := range e.Proof {
		if !printable(k, 64) || !printable(v, 500) {
			return fieldErr("proof", "keys (64) and values (500) must be printable text")
		}
	}
	if ev := e.Evidence; ev != nil && (!printable(ev.IP, 64) || !printable(ev.UserAgent, 1000) || !printable(ev.Address, 320)) {
		return fieldErr("evidence", "ip (64), user_agent (1000) and address (320) must be printable text")
	}
	return nil
}

// FieldError is a client-safe validation error naming the field at fault.
type FieldError struct{ Field, Detail string }

func (e *FieldError) Error() string { return e.Field + ": " + e.Detail }

func fieldErr(field, detail string) error { return &FieldError{Field: field, Detail: detail} }

func printable(s string, max int) bool {
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

// Record appends e to the workspace's ledger and updates the current state of (contact, purpose),
// in tx. It fills e's sequence number, times, commitment and hashes. The state row is locked
// first: a withdrawal waits there for any marketing send holding the consent decision for this
// contact and purpose, and only then takes the workspace's chain head, so waiting on a send never
// holds up the rest of the workspace's ledger.
func (s *Service) Record(ctx context.Context, tx pgx.Tx, e *Event) error {
	now := s.now().UTC().Truncate(time.Microsecond)
	if e.OccurredAt.IsZero() {
		e.OccurredAt = now
	}
	e.OccurredAt = e.OccurredAt.UTC().Truncate(time.Microsecond)
	if e.ExpiresAt != nil {
		t := e.ExpiresAt.UTC().Truncate(time.Microsecond)
		e.ExpiresAt = &t
	}
	if err := e.validate(now); err != nil {
		return err
	}
	e.RecordedAt = now
	if _, err := tx.Exec(ctx, `SELECT 1 FROM consent_state WHERE workspace_id = $1 AND contact_id = $2 AND purpose = $3 FOR UPDATE`,
		e.WorkspaceID, e.ContactID, e.Purpose); err != nil {
		return fmt.Errorf("record consent: lock state: %w", err)
	}
	err := tx.QueryRow(ctx, `
		INSERT INTO consent_chain_heads (workspace_id, seq, hash) VALUES ($1, 0, $2)
		ON CONFLICT (workspace_id) DO UPDATE SET seq = consent_chain_heads.seq
		RETURNING seq + 1, hash`, e.WorkspaceID, genesis).Scan(&e.Seq, &e.PrevHash)
	if err != nil {
		return fmt.Errorf("record consent: chain head: %w", err)
	}
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	ev := Evidence{}
	if e.Evidence != nil {
		ev = *e.Evidence
	}
	e.EvidenceCommitment = evidenceCommitment(salt, ev)
	e.Hash = eventHash(e)
	proof, err := json.Marshal(orEmpty(e.Proof))
	if err != nil {
		return fmt.Errorf("record consent: %w", err)
	}
	err = tx.QueryRow(ctx, `
		INSERT INTO consent_events (workspace_id, seq, contact_id, purpose, action, source, lawful_basis,
			notice_version, actor, proof, occurred_at, recorded_at, expires_at, evidence_commitment, prev_hash, hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
		RETURNING id`,
		e.WorkspaceID, e.Seq, e.ContactID, e.Purpose, e.Action, e.Source, e.LawfulBasis, e.NoticeVersion,
		e.Actor, proof, e.OccurredAt, e.RecordedAt, e.ExpiresAt, e.EvidenceCommitment, e.PrevHash, e.Hash).Scan(&e.ID)
	if err != nil {
		return fmt.Errorf("record consent: insert event: %w", err)
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO consent_evidence (event_id, workspace_id, contact_id, salt, ip, user_agent, address)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, e.ID, e.WorkspaceID, e.ContactID, salt, ev.IP, ev.UserAgent, ev.Address)
	b.Queue(`UPDATE consent_chain_heads SET seq = $2, hash = $3 WHERE workspace_id = $1`, e.WorkspaceID, e.Seq, e.Hash)
	b.Queue(`
		INSERT INTO consent_state (workspace_id, contact_id, purpose, status, event_id, source, updated_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (workspace_id, contact_id, purpose) DO UPDATE SET status = EXCLUDED.status,
			event_id = EXCLUDED.event_id, source = EXCLUDED.source, updated_at = EXCLUDED.updated_at,
			expires_at = EXCLUDED.expires_at`,
		e.WorkspaceID, e.ContactID, e.Purpose, e.Action, e.ID, e.Source, e.OccurredAt, e.ExpiresAt)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("record consent: state: %w", err)
	}
	s.Metrics.Events.WithLabelValues(e.Action, e.Source).Inc()
	return nil
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// State is the current consent of a contact for one purpose.
type State struct {
	Purpose   string     `json:"purpose"`
	Status    string     `json:"status"`
	Source    string     `json:"source"`
	UpdatedAt time.Time  `json:"updated_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Live is true for a grant that has not expired.
	Live bool `json:"live"`
}

// States returns the contact's current state for every purpose it has an event for.
func (s *Service) States(ctx context.Context, q db.Querier, workspaceID, contactID int64) ([]State, error) {
	rows, err := q.Query(ctx, `
		SELECT purpose, status, source, updated_at, expires_at,
			status = 'granted' AND (expires_at IS NULL OR expires_at > $3)
		FROM consent_state WHERE workspace_id = $1 AND contact_id = $2 ORDER BY purpose`,
		workspaceID, contactID, s.now())
	if err != nil {
		return nil, fmt.Errorf("consent states: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (State, error) {
		var st State
		err := r.Scan(&st.Purpose, &st.Status, &st.Source, &st.UpdatedAt, &st.ExpiresAt, &st.Live)
		return st, err
	})
	if err != nil {
		return nil, fmt.Errorf("consent states: %w", err)
	}
	return out, nil
}

const eventColumns = `e.id, e.workspace_id, e.seq, e.contact_id, e.purpose, e.action, e.source, e.lawful_basis,
	e.notice_version, e.actor, e.proof, e.occurred_at, e.recorded_at, e.expires_at, e.evidence_commitment,
	e.prev_hash, e.hash, v.salt, v.ip, v.user_agent, v.address`

const eventFrom = ` FROM consent_events e LEFT JOIN consent_evidence v ON v.event_id = e.id `

// scanEvent reads one row of eventColumns; salt is nil when the evidence has been erased.
func scanEvent(row pgx.Row) (e Event, salt []byte, err error) {
	var proof []byte
	var ip, ua, addr *string
	err = row.Scan(&e.ID, &e.WorkspaceID, &e.Seq, &e.ContactID, &e.Purpose, &e.Action, &e.Source, &e.LawfulBasis,
		&e.NoticeVersion, &e.Actor, &proof, &e.OccurredAt, &e.RecordedAt, &e.ExpiresAt, &e.EvidenceCommitment,
		&e.PrevHash, &e.Hash, &salt, &ip, &ua, &addr)
	if err != nil {
		return e, nil, err
	}
	if err := json.Unmarshal(proof, &e.Proof); err != nil {
		return e, nil, fmt.Errorf("decode proof of event %d: %w", e.ID, err)
	}
	if salt != nil {
		e.Evidence = &Evidence{IP: deref(ip), UserAgent: deref(ua), Address: deref(addr)}
	}
	return e, salt, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// History returns the contact's ledger events, oldest first.
func (s *Service) History(ctx context.Context, q db.Querier, workspaceID, contactID int64) ([]Event, error) {
	rows, err := q.Query(ctx, `SELECT `+eventColumns+eventFrom+`WHERE e.workspace_id = $1 AND e.contact_id = $2 ORDER BY e.seq`,
		workspaceID, contactID)
	if err != nil {
		return nil, fmt.Errorf("consent history: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		e, _, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("consent history: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("consent history: %w", err)
	}
	return out, nil
}

// ErrChainBroken is wrapped by Verify's error when the chain does not verify.
var ErrChainBroken = errors.New("consent ledger does not verify")
