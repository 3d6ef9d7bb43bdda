package consent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// genesis is the previous hash of a workspace's first event.
var genesis = make([]byte, sha256.Size)

// canonicalTime is how every time enters a hash: UTC, microseconds (what PostgreSQL keeps).
const canonicalTime = "2006-01-02T15:04:05.000000Z"

// canonicalEvent is the hashed form of an event. encoding/json writes struct fields in this
// order and map keys sorted, so the bytes depend only on the values.
type canonicalEvent struct {
	V             int               `json:"v"`
	WorkspaceID   int64             `json:"workspace_id"`
	Seq           int64             `json:"seq"`
	ContactID     int64             `json:"contact_id"`
	Purpose       string            `json:"purpose"`
	Action        string            `json:"action"`
	Source        string            `json:"source"`
	LawfulBasis   string            `json:"lawful_basis"`
	NoticeVersion int               `json:"notice_version"`
	Actor         string            `json:"actor"`
	Proof         map[string]string `json:"proof"`
	OccurredAt    string            `json:"occurred_at"`
	RecordedAt    string            `json:"recorded_at"`
	ExpiresAt     string            `json:"expires_at"`
	Evidence      string            `json:"evidence"`
}

// eventHash is SHA-256(prev_hash || canonical form of e).
func eventHash(e *Event) []byte {
	c := canonicalEvent{
		V: 1, WorkspaceID: e.WorkspaceID, Seq: e.Seq, ContactID: e.ContactID, Purpose: e.Purpose,
		Action: e.Action, Source: e.Source, LawfulBasis: e.LawfulBasis, NoticeVersion: e.NoticeVersion,
		Actor: e.Actor, Proof: e.Proof, OccurredAt: fmtTime(e.OccurredAt), RecordedAt: fmtTime(e.RecordedAt),
		Evidence: hex.EncodeToString(e.EvidenceCommitment),
	}
	if c.Proof == nil {
		c.Proof = map[string]string{}
	}
	if e.ExpiresAt != nil {
		c.ExpiresAt = fmtTime(*e.ExpiresAt)
	}
	body, _ := json.Marshal(c) // cannot fail: strings, numbers and a string map
	h := sha256.New()
	h.Write(e.PrevHash)
	h.Write(body)
	return h.Sum(nil)
}

// evidenceCommitment is SHA-256(salt || canonical evidence). The random salt, erased with the
// evidence, keeps the commitment from confirming a guessed address or IP.
func evidenceCommitment(salt []byte, ev Evidence) []byte {
	body, _ := json.Marshal(ev)
	h := sha256.New()
	h.Write(salt)
	h.Write(body)
	return h.Sum(nil)
}

func fmtTime(t time.Time) string { return t.UTC().Truncate(time.Microsecond).Format(canonicalTime) }
