package consent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/internal/contacts"
	"herald/internal/db"
)

// LedgerPart is the consent package's DataPart: the contact's ledger events with their evidence,
// its current consent states, its double opt-in requests, the suppression entry of its address
// and its privacy requests. Erasure deletes the evidence (the side table; the events and the
// chain stay and still verify), the double opt-in requests of the address and the requests'
// notes. The suppression entry is the erasure's own business (Rights.Erase).
type LedgerPart struct{ Service *Service }

// Name is "consent".
func (LedgerPart) Name() string { return "consent" }

// ledgerExport is the "consent" part of the export document.
type ledgerExport struct {
	State             []State            `json:"state"`
	History           []eventJSON        `json:"history"`
	SubscribeRequests []subscribeExport  `json:"subscribe_requests"`
	Suppression       *suppressionExport `json:"suppression"`
	PrivacyRequests   []privacyReqExport `json:"privacy_requests"`
}

type subscribeExport struct {
	ID          string     `json:"id"`
	Address     string     `json:"address"`
	Name        string     `json:"name"`
	Purposes    []string   `json:"purposes"`
	IP          string     `json:"ip"`
	UserAgent   string     `json:"user_agent"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   time.Time  `json:"expires_at"`
	ConfirmedAt *time.Time `json:"confirmed_at"`
}

type suppressionExport struct {
	Reason    string    `json:"reason"`
	Detail    string    `json:"detail"`
	CreatedAt time.Time `json:"created_at"`
}

type privacyReqExport struct {
	ID          int64      `json:"id"`
	Kind        string     `json:"kind"`
	Status      string     `json:"status"`
	Channel     string     `json:"channel"`
	ReceivedAt  time.Time  `json:"received_at"`
	DueAt       time.Time  `json:"due_at"`
	CompletedAt *time.Time `json:"completed_at"`
	Note        string     `json:"note"`
}

// Export returns the contact's consent data.
func (p LedgerPart) Export(ctx context.Context, q db.Querier, s Subject) (any, error) {
	out := ledgerExport{State: []State{}, History: []eventJSON{}, SubscribeRequests: []subscribeExport{},
		PrivacyRequests: []privacyReqExport{}}
	states, err := p.Service.States(ctx, q, s.WorkspaceID, s.ContactID)
	if err != nil {
		return nil, err
	}
	out.State = append(out.State, states...)
	events, err := p.Service.History(ctx, q, s.WorkspaceID, s.ContactID)
	if err != nil {
		return nil, err
	}
	for _, e := range events {
		out.History = append(out.History, eventOut(&e)) // the consents API's shape, with its proof
	}
	rows, err := q.Query(ctx, `SELECT id::text, address, name, purposes, ip, user_agent, created_at, expires_at, confirmed_at
		FROM subscribe_requests WHERE workspace_id = $1 AND address = $2 ORDER BY created_at, id`, s.WorkspaceID, s.Address)
	if err != nil {
		return nil, fmt.Errorf("subscribe requests: %w", err)
	}
	subs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (subscribeExport, error) {
		var x subscribeExport
		err := r.Scan(&x.ID, &x.Address, &x.Name, &x.Purposes, &x.IP, &x.UserAgent, &x.CreatedAt, &x.ExpiresAt, &x.ConfirmedAt)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe requests: %w", err)
	}
	out.SubscribeRequests = append(out.SubscribeRequests, subs...)
	var sp suppressionExport
	err = q.QueryRow(ctx, `SELECT reason, detail, created_at FROM suppressions WHERE workspace_id = $1 AND address_hash = $2`,
		s.WorkspaceID, s.AddressHash).Scan(&sp.Reason, &sp.Detail, &sp.CreatedAt)
	switch {
	case err == nil:
		out.Suppression = &sp
	case !errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("suppression: %w", err)
	}
	rows, err = q.Query(ctx, `SELECT id, kind, status, channel, received_at, due_at, completed_at, note
		FROM privacy_requests WHERE workspace_id = $1 AND contact_id = $2 ORDER BY id`, s.WorkspaceID, s.ContactID)
	if err != nil {
		return nil, fmt.Errorf("privacy requests: %w", err)
	}
	reqs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (privacyReqExport, error) {
		var x privacyReqExport
		err := r.Scan(&x.ID, &x.Kind, &x.Status, &x.Channel, &x.ReceivedAt, &x.DueAt, &x.CompletedAt, &x.Note)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("privacy requests: %w", err)
	}
	out.PrivacyRequests = append(out.PrivacyRequests, reqs...)
	return out, nil
}

// Erase deletes the contact's evidence rows and the double opt-in requests of its address, and
// empties the notes of its privacy requests.
func (p LedgerPart) Erase(ctx context.Context, tx pgx.Tx, s Subject) (int64, error) {
	b := &pgx.Batch{}
	b.Queue(`DELETE FROM consent_evidence WHERE workspace_id = $1 AND contact_id = $2`, s.WorkspaceID, s.ContactID)
	b.Queue(`DELETE FROM subscribe_requests WHERE workspace_id = $1 AND address = $2`, s.WorkspaceID, s.Address)
	b.Queue(`UPDATE privacy_requests SET note = '' WHERE workspace_id = $1 AND contact_id = $2 AND note <> ''`,
		s.WorkspaceID, s.ContactID)
	res := tx.SendBatch(ctx, b)
	var n int64
	for range 3 {
		tag, err := res.Exec()
		if err != nil {
			_ = res.Close()
			return n, fmt.Errorf("erase consent data: %w", err)
		}
		n += tag.RowsAffected()
	}
	if err := res.Close(); err != nil {
		return n, fmt.Errorf("erase consent data: %w", err)
	}
	return n, nil
}

// ContactPart is the DataPart of the contact row (internal/contacts, which cannot import this
// package): its fields and attributes; erasure empties them (contacts.Erase).
type ContactPart struct{}

// Name is "contact".
func (ContactPart) Name() string { return "contact" }

// Export returns the contact's fields and attributes.
func (ContactPart) Export(ctx context.Context, q db.Querier, s Subject) (any, error) {
	return contacts.ExportByID(ctx, q, s.WorkspaceID, s.ContactID)
}

// Erase empties the contact row's personal fields.
func (ContactPart) Erase(ctx context.Context, tx pgx.Tx, s Subject) (int64, error) {
	return contacts.Erase(ctx, tx, s.WorkspaceID, s.ContactID, s.ErasedExternalID)
}
