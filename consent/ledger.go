package consent

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
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
	// SourceObjection marks the withdrawals of a person's objection to direct marketing
	// (ObjectToMarketing); it only ever withdraws.
	SourceObjection = "objection"

	BasisConsent   = "consent"
	BasisSoftOptIn = "soft_opt_in"
	BasisContract  = "contract"
)

// Sources and LawfulBases list the accepted values, for validation and error messages.
var (
	Sources     = []string{SourceAPI, SourceForm, SourceImport, SourcePreferenceCentre, SourceOneClick, SourceComplaint, SourceAdmin, SourceObjection}
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
	case e.Source == SourceObjection && e.Action != ActionWithdrawn:
		return fieldErr("source", "an objection only withdraws")
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
// in tx. It fills e's sequence number, times, commitment and hashes. A transaction that records
// several events must record them in one RecordAll call, not in several Record calls: see
// RecordAll for why.
func (s *Service) Record(ctx context.Context, tx pgx.Tx, e *Event) error {
	return s.RecordAll(ctx, tx, []*Event{e})
}

// RecordAll appends events, all of one workspace, to its ledger in order, and updates the current
// states, in tx. Nothing is written unless every event is valid.
//
// Locks are taken in one order by every writer, which is what keeps concurrent writers free of
// deadlocks: first each contact's consent lock (a transaction-scoped advisory lock, in key order;
// it serialises writers of a contact even before its state rows exist), then the state rows FOR
// UPDATE (a withdrawal waits here for any marketing send holding the consent decision of this
// contact and purpose FOR SHARE), and only then the workspace's chain head, which is held to
// commit. Waiting on a send therefore never holds up the rest of the workspace's ledger, and no
// transaction holds the head while it waits for a contact or a state row: which is also why a
// transaction must not call Record twice.
func (s *Service) RecordAll(ctx context.Context, tx pgx.Tx, events []*Event) error {
	if len(events) == 0 {
		return nil
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	ws := events[0].WorkspaceID
	var contactIDs []int64
	for _, e := range events {
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
		if e.WorkspaceID != ws {
			return errors.New("record consent: events of several workspaces in one call")
		}
		e.RecordedAt = now
		contactIDs = append(contactIDs, e.ContactID)
	}
	if err := s.LockContacts(ctx, tx, ws, contactIDs...); err != nil {
		return fmt.Errorf("record consent: %w", err)
	}
	byKey := slices.Clone(events)
	slices.SortFunc(byKey, func(a, b *Event) int {
		return cmp.Or(cmp.Compare(a.ContactID, b.ContactID), strings.Compare(a.Purpose, b.Purpose))
	})
	lock := &pgx.Batch{}
	for _, e := range byKey {
		lock.Queue(`SELECT 1 FROM consent_state WHERE workspace_id = $1 AND contact_id = $2 AND purpose = $3 FOR UPDATE`,
			e.WorkspaceID, e.ContactID, e.Purpose)
	}
	if err := tx.SendBatch(ctx, lock).Close(); err != nil {
		return fmt.Errorf("record consent: lock state: %w", err)
	}
	var seq int64
	var prev []byte
	err := tx.QueryRow(ctx, `
		INSERT INTO consent_chain_heads (workspace_id, seq, hash) VALUES ($1, 0, $2)
		ON CONFLICT (workspace_id) DO UPDATE SET seq = consent_chain_heads.seq
		RETURNING seq, hash`, ws, genesis).Scan(&seq, &prev)
	if err != nil {
		return fmt.Errorf("record consent: chain head: %w", err)
	}
	for _, e := range events {
		seq++
		e.Seq, e.PrevHash = seq, prev
		if err := s.appendEvent(ctx, tx, e); err != nil {
			return err
		}
		prev = e.Hash
	}
	if _, err := tx.Exec(ctx, `UPDATE consent_chain_heads SET seq = $2, hash = $3 WHERE workspace_id = $1`, ws, seq, prev); err != nil {
		return fmt.Errorf("record consent: chain head: %w", err)
	}
	for _, e := range events {
		s.Metrics.Events.WithLabelValues(e.Action, e.Source).Inc()
	}
	return nil
}

// appendEvent writes one event whose Seq and PrevHash are set, its evidence and its state.
func (s *Service) appendEvent(ctx context.Context, tx pgx.Tx, e *Event) error {
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
	return nil
}

// LockContacts takes the consent lock of each contact for the rest of tx, in key order. Record
// takes it itself; a caller that reads a contact's consent state to decide what to record takes
// it first, so that what it read is still true when it records.
func (s *Service) LockContacts(ctx context.Context, tx pgx.Tx, workspaceID int64, contactIDs ...int64) error {
	b := &pgx.Batch{}
	for _, k := range contactLockKeys(workspaceID, contactIDs) {
		b.Queue(`SELECT pg_advisory_xact_lock($1)`, k)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("lock contact consent: %w", err)
	}
	return nil
}

// contactLockKeys returns the contacts' consent lock keys in the order every locker takes them:
// ascending, each once.
func contactLockKeys(workspaceID int64, contactIDs []int64) []int64 {
	keys := make([]int64, 0, len(contactIDs))
	for _, c := range contactIDs {
		keys = append(keys, contactLockKey(workspaceID, c))
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// contactLockKey is the advisory lock key of a contact's consent: 64 bits of a hash, so that a
// collision (which would only serialise two contacts) is negligible.
func contactLockKey(workspaceID, contactID int64) int64 {
	h := sha256.Sum256(fmt.Appendf(nil, "herald/consent/%d/%d", workspaceID, contactID))
	return int64(binary.BigEndian.Uint64(h[:8]))
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
	return s.states(ctx, q, workspaceID, contactID, "")
}

// states reads the contact's states; lock is "" or a locking clause such as "FOR UPDATE".
func (s *Service) states(ctx context.Context, q db.Querier, workspaceID, contactID int64, lock string) ([]State, error) {
	rows, err := q.Query(ctx, `
		SELECT purpose, status, source, updated_at, expires_at,
			status = 'granted' AND (expires_at IS NULL OR expires_at > $3)
		FROM consent_state WHERE workspace_id = $1 AND contact_id = $2 ORDER BY purpose `+lock,
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
