package consent

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/internal/db"
)

// ExportSchema names the shape of the export document (README, "Data-subject rights: export and
// erasure"). A change that removes or renames a field gets a new version.
const ExportSchema = "herald.contact-export/1"

// Subject is the person a rights request is about: one contact of a workspace, with what the
// packages holding its data look it up by.
type Subject struct {
	WorkspaceID int64
	ContactID   int64
	ExternalID  string
	// Address is the contact's (normalised) email address; Name its name.
	Address string
	Name    string
	// AddressHash is the suppression list's keyed hash of Address (feedback_events key on it).
	AddressHash []byte
	// ErasedExternalID is the external id the contact row keeps once erased: a keyed hash of
	// ExternalID, so the CRM's id (which may contain the address) is not kept in clear, and an
	// erase or export naming the old id still finds the erased row.
	ErasedExternalID string
}

// DataPart is one package's share of a person's data: each package that stores personal data
// implements it for its own tables (its rights.go), keeping its SQL to itself.
type DataPart interface {
	// Name is the part's key in the export document.
	Name() string
	// Export returns what the part holds on s, as a JSON-encodable value.
	Export(ctx context.Context, q db.Querier, s Subject) (any, error)
	// Erase removes s's personal data from the part's tables in tx, keeping ids, counts,
	// timestamps and statuses, and returns how many rows it changed. Erasing twice changes
	// nothing the second time.
	Erase(ctx context.Context, tx pgx.Tx, s Subject) (removed int64, err error)
}

// Rights carries out access, export and erasure requests over every DataPart.
type Rights struct {
	Service *Service
	// Parts are the packages' parts; the contact's and the consent package's own come first
	// (NewRights puts them there).
	Parts []DataPart
	// Mailer sends the preference centre's export confirmation and the export itself; nil
	// disables the preference centre's export button.
	Mailer RightsMailer
	// LinkTTL is how long an export confirmation link stays valid (default 72h).
	LinkTTL time.Duration
}

// NewRights returns Rights over the contact row's and the consent package's own parts and parts
// (mailer, campaigns, tracking: each package's RightsPart). Two parts of one name are a
// programming error, and panic.
func NewRights(svc *Service, mailer RightsMailer, parts ...DataPart) *Rights {
	all := append([]DataPart{ContactPart{}, LedgerPart{Service: svc}}, parts...)
	seen := map[string]bool{"schema": true, "generated_at": true, "workspace": true}
	for _, p := range all {
		if seen[p.Name()] {
			panic(fmt.Sprintf("consent: rights part name %q is used twice", p.Name()))
		}
		seen[p.Name()] = true
	}
	return &Rights{Service: svc, Parts: all, Mailer: mailer}
}

// erasedIDDomain derives the key of ErasedExternalID.
const erasedIDDomain = "herald/erased-external-id/v1"

// ErasedExternalID is the external id an erased contact keeps: "erased:" and 32 hex digits of a
// keyed hash of the workspace and the CRM's id.
func (k *Keys) ErasedExternalID(workspaceID int64, externalID string) string {
	m := hmac.New(sha256.New, k.DeriveKey(erasedIDDomain, 32))
	m.Write([]byte(strconv.FormatInt(workspaceID, 10)))
	m.Write([]byte{0})
	m.Write([]byte(externalID))
	return "erased:" + hex.EncodeToString(m.Sum(nil)[:16])
}

// subject reads the workspace's contact (locking its row FOR UPDATE when lock is set). An erased
// contact (empty address) is returned with an empty Address; a missing one wraps db.ErrNotFound.
func (rt *Rights) subject(ctx context.Context, q db.Querier, workspaceID, contactID int64, lock bool) (Subject, error) {
	s := Subject{WorkspaceID: workspaceID, ContactID: contactID}
	query := `SELECT external_id, email, name FROM contacts WHERE workspace_id = $1 AND id = $2`
	if lock {
		query += ` FOR UPDATE`
	}
	err := q.QueryRow(ctx, query, workspaceID, contactID).Scan(&s.ExternalID, &s.Address, &s.Name)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, fmt.Errorf("contact %d: %w", contactID, db.ErrNotFound)
	}
	if err != nil {
		return s, fmt.Errorf("read contact: %w", err)
	}
	if s.Address != "" {
		s.AddressHash = rt.Service.Keys.AddressHash(workspaceID, s.Address)
	}
	s.ErasedExternalID = rt.Service.Keys.ErasedExternalID(workspaceID, s.ExternalID)
	return s, nil
}

// Export returns the export document of the workspace's contact: one JSON object with the
// schema, the time and workspace, and one key per part. An erased contact wraps ErrContactGone.
// Run it in a REPEATABLE READ transaction for a consistent picture.
func (rt *Rights) Export(ctx context.Context, q db.Querier, workspaceID, contactID int64) ([]byte, error) {
	s, err := rt.subject(ctx, q, workspaceID, contactID, false)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if s.Address == "" {
		return nil, fmt.Errorf("export contact %d: %w", contactID, ErrContactGone)
	}
	var ws string
	if err := q.QueryRow(ctx, `SELECT name FROM workspaces WHERE id = $1`, workspaceID).Scan(&ws); err != nil {
		return nil, fmt.Errorf("export: workspace: %w", err)
	}
	// Written field by field so that the schema comes first and the parts in their order.
	var buf bytes.Buffer
	head, err := json.Marshal(map[string]any{"schema": ExportSchema})
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	buf.Write(head[:len(head)-1])
	for _, f := range []struct {
		key string
		v   any
	}{{"generated_at", rt.Service.now().UTC().Truncate(time.Microsecond)}, {"workspace", ws}} {
		if err := writeField(&buf, f.key, f.v); err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
	}
	for _, p := range rt.Parts {
		v, err := p.Export(ctx, q, s)
		if err != nil {
			return nil, fmt.Errorf("export %s: %w", p.Name(), err)
		}
		if err := writeField(&buf, p.Name(), v); err != nil {
			return nil, fmt.Errorf("export %s: %w", p.Name(), err)
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

func writeField(buf *bytes.Buffer, key string, v any) error {
	k, err := json.Marshal(key)
	if err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	buf.WriteByte(',')
	buf.Write(k)
	buf.WriteByte(':')
	buf.Write(b)
	return nil
}

// RecordExport records a completed export request (channel api or email) and its audit entry in
// tx, on behalf of actor, once the document has been produced and handed over.
func (rt *Rights) RecordExport(ctx context.Context, tx pgx.Tx, workspaceID, contactID int64, channel, actor string, size int) (PrivacyRequest, error) {
	req, err := rt.Service.RecordPrivacyRequest(ctx, tx, PrivacyRequest{WorkspaceID: workspaceID, ContactID: &contactID,
		Kind: RequestExport, Status: StatusCompleted, Channel: channel}, actor)
	if err != nil {
		return req, err
	}
	err = AuditWrite(ctx, tx, Audit{WorkspaceID: workspaceID, Actor: actor, Action: "contact.export",
		Target: "contact:" + strconv.FormatInt(contactID, 10), Detail: map[string]any{"privacy_request_id": req.ID, "bytes": size}})
	if err != nil {
		return req, fmt.Errorf("record export: %w", err)
	}
	return req, nil
}

// Erasure is the outcome of Erase.
type Erasure struct {
	// Request is the completed privacy request of kind erase.
	Request PrivacyRequest
	// Removed counts the rows each part changed (by part name), and "suppression" the entry.
	Removed map[string]int64
	// Created is false when the contact had been erased before: Request is then that erasure.
	Created bool
}

// Erase removes the personal data of the workspace's contact everywhere, in tx, on behalf of
// actor: every grant is withdrawn (ledger events with source admin and proof request=erase, so
// nothing is sent or tracked any more), each part erases its tables, the address goes on the
// suppression list as its keyed hash only with reason erased (replacing an earlier entry, whose
// clear address and detail go too), a completed erase request is recorded and the audit log says
// what was done, with counts only. The ledger still verifies: its events stay, their evidence
// (side table) goes. Erasing an erased contact returns its earlier erasure and writes nothing.
// Errors wrap db.ErrNotFound for a missing contact.
func (rt *Rights) Erase(ctx context.Context, tx pgx.Tx, workspaceID, contactID int64, channel, actor string) (Erasure, error) {
	s, err := rt.subject(ctx, tx, workspaceID, contactID, true)
	if err != nil {
		return Erasure{}, fmt.Errorf("erase: %w", err)
	}
	if s.Address == "" {
		prev, err := rt.lastErasure(ctx, tx, workspaceID, contactID)
		if err == nil {
			return Erasure{Request: prev}, nil
		}
		if !errors.Is(err, db.ErrNotFound) {
			return Erasure{}, err
		}
	}
	removed := map[string]int64{}
	if s.Address != "" {
		// Ends all processing first: the withdrawals' evidence (empty) goes with the rest below.
		_, err := rt.Service.unsubscribeAll(ctx, tx, workspaceID, contactID, s.Address, SourceAdmin, actor,
			map[string]string{"scope": "all", "request": RequestErase}, Evidence{})
		if err != nil {
			return Erasure{}, fmt.Errorf("erase: withdraw: %w", err)
		}
	}
	for _, p := range rt.Parts {
		n, err := p.Erase(ctx, tx, s)
		if err != nil {
			return Erasure{}, fmt.Errorf("erase %s: %w", p.Name(), err)
		}
		removed[p.Name()] = n
	}
	if s.Address != "" {
		tag, err := tx.Exec(ctx, `
			INSERT INTO suppressions (workspace_id, address_hash, address, reason, detail, actor)
			VALUES ($1, $2, NULL, 'erased', '', $3)
			ON CONFLICT (workspace_id, address_hash) DO UPDATE SET address = NULL, reason = 'erased', detail = '',
				actor = EXCLUDED.actor`, workspaceID, s.AddressHash, actor)
		if err != nil {
			return Erasure{}, fmt.Errorf("erase: suppress: %w", err)
		}
		removed["suppression"] = tag.RowsAffected()
	}
	req, err := rt.Service.RecordPrivacyRequest(ctx, tx, PrivacyRequest{WorkspaceID: workspaceID, ContactID: &contactID,
		Kind: RequestErase, Status: StatusCompleted, Channel: channel}, actor)
	if err != nil {
		return Erasure{}, err
	}
	err = AuditWrite(ctx, tx, Audit{WorkspaceID: workspaceID, Actor: actor, Action: "contact.erase",
		Target: "contact:" + strconv.FormatInt(contactID, 10), Detail: map[string]any{"privacy_request_id": req.ID, "removed": removed}})
	if err != nil {
		return Erasure{}, fmt.Errorf("erase: %w", err)
	}
	return Erasure{Request: req, Removed: removed, Created: true}, nil
}

// lastErasure returns the contact's latest completed erase request, or db.ErrNotFound.
func (rt *Rights) lastErasure(ctx context.Context, q db.Querier, workspaceID, contactID int64) (PrivacyRequest, error) {
	r, err := scanPrivacyRequest(q.QueryRow(ctx, `SELECT `+privacyRequestColumns+privacyRequestFrom+`
		WHERE r.workspace_id = $1 AND r.contact_id = $2 AND r.kind = 'erase' AND r.status = 'completed'
		ORDER BY r.id DESC LIMIT 1`, workspaceID, contactID))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, db.ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("erase: earlier erasure: %w", err)
	}
	return r, nil
}
