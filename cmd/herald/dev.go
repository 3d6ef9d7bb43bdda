package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/consent"
	"herald/internal/contacts"
	"herald/internal/workspace"
)

// demo is what `herald dev` prepares: the "demo" workspace, a new key with every scope, a
// "newsletter" purpose, a contact who opted in to it, and the workspace's double opt-in form key.
type demo struct {
	key     string
	formKey string
}

func setupDemo(ctx context.Context, pool *pgxpool.Pool, svc *consent.Service) (demo, error) {
	var d demo
	ws, err := workspace.Ensure(ctx, pool, "demo")
	if err != nil {
		return d, err
	}
	if d.key, err = workspace.CreateKey(ctx, pool, ws.ID, workspace.AllScopes); err != nil {
		return d, err
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		p, _, err := consent.PurposeSave(ctx, tx, consent.Purpose{WorkspaceID: ws.ID, Name: "newsletter",
			Title: "Monthly newsletter", Description: "News about the product, once a month.",
			Notice: "We email you our newsletter once a month. Unsubscribe at any time from any newsletter."})
		if err != nil {
			return err
		}
		st, err := consent.SettingsGet(ctx, tx, ws.ID)
		if err != nil {
			return err
		}
		if st.ConfirmFrom == "" {
			st.ConfirmFrom, st.PrivacyURL = "demo@example.com", "https://example.com/privacy"
			if st, err = consent.SettingsPut(ctx, tx, st); err != nil {
				return err
			}
		}
		d.formKey = st.FormKey
		c, _, err := contacts.Upsert(ctx, tx, ws.ID, contacts.Input{ExternalID: "demo-1", Email: "zoe@example.com", Name: "Zoë"})
		if err != nil {
			return err
		}
		states, err := svc.States(ctx, tx, ws.ID, c.ID)
		if err != nil || len(states) > 0 {
			return err
		}
		return svc.Record(ctx, tx, &consent.Event{WorkspaceID: ws.ID, ContactID: c.ID, Purpose: p.Name,
			Action: consent.ActionGranted, Source: consent.SourceAdmin, LawfulBasis: consent.BasisConsent,
			NoticeVersion: p.NoticeVersion, Actor: "herald dev", Proof: map[string]string{"note": "demo data"}})
	})
	if err != nil {
		return d, fmt.Errorf("demo data: %w", err)
	}
	return d, nil
}
