package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/campaigns"
	"herald/consent"
	"herald/internal/config"
	"herald/internal/workspace"
	"herald/mailer"
	"herald/tracking"
)

// retentionDefaults is the retention policy of workspaces without their own, from the
// configuration.
func retentionDefaults(cfg config.Config) consent.RetentionPolicy {
	return consent.RetentionPolicy{OptedOutDays: cfg.RetentionOptedOutDays, TrackingDays: cfg.RetentionTrackingDays,
		BodyDays: cfg.RetentionBodyDays, DeletionGraceDays: cfg.RetentionDeletionGraceDays}
}

// newRetentionWorker wires the retention job: each package removes from its own tables, in the
// order the purge of a deleted workspace needs (events, then campaigns, then messages, then the
// consent package's tables and contacts).
func newRetentionWorker(pool *pgxpool.Pool, cfg config.Config, m *consent.RetentionMetrics, logger *slog.Logger) *consent.RetentionWorker {
	return &consent.RetentionWorker{DB: pool, Defaults: retentionDefaults(cfg), Metrics: m, Logger: logger, Batch: cfg.RetentionBatch,
		OptedOut: []consent.RetentionStep[consent.OptOutPurger]{
			{What: consent.RemovedOptedOutEvents, Purger: tracking.Retention{}},
			{What: consent.RemovedOptedOutRecipients, Purger: campaigns.Retention{}},
		},
		Aged: []consent.RetentionStep[consent.AgedPurger]{
			{What: consent.RemovedExpiredEvents, Purger: tracking.Retention{}},
			{What: consent.RemovedMessageBodies, Purger: mailer.Retention{}},
		},
		Workspace: []consent.WorkspacePurger{tracking.Retention{}, campaigns.Retention{}, mailer.Retention{}},
	}
}

const workspaceUsage = "usage: herald workspace delete NAME"

// cmdWorkspace runs `herald workspace delete NAME`: in one transaction the workspace is marked
// deleted (its API keys stop working), its unfinished campaigns are cancelled, its unsent messages
// are suppressed, and the deletion is audited. The retention job purges it after its grace period.
func cmdWorkspace(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 || args[0] != "delete" {
		return errors.New(workspaceUsage)
	}
	fs := flag.NewFlagSet("workspace delete", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New(workspaceUsage)
	}
	name := fs.Arg(0)
	if err := workspace.ValidName(name); err != nil {
		return err
	}
	cfg, _, err := setup(getenv, stderr)
	if err != nil {
		return err
	}
	pool, err := openCurrentDB(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer pool.Close()
	d, err := deleteWorkspace(ctx, pool, name, time.Now())
	if err != nil {
		return err
	}
	policy, err := consent.RetentionPolicyGet(ctx, pool, d.ws.ID, retentionDefaults(cfg))
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "workspace %s deleted: %d campaigns cancelled, %d messages stopped; its data is purged after %d days\n",
		name, d.campaigns, d.messages, policy.DeletionGraceDays)
	return err
}

type deletedWorkspace struct {
	ws                  workspace.Workspace
	campaigns, messages int64
}

// deleteWorkspace soft-deletes the workspace and stops its sending, audited, in one transaction.
func deleteWorkspace(ctx context.Context, pool *pgxpool.Pool, name string, now time.Time) (deletedWorkspace, error) {
	var d deletedWorkspace
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var err error
		if d.ws, err = workspace.SoftDelete(ctx, tx, name, now); err != nil {
			return err
		}
		if d.campaigns, err = campaigns.CancelWorkspace(ctx, tx, d.ws.ID); err != nil {
			return err
		}
		if d.messages, err = mailer.StopWorkspace(ctx, tx, d.ws.ID); err != nil {
			return err
		}
		return consent.AuditWrite(ctx, tx, consent.Audit{WorkspaceID: d.ws.ID, Actor: workspace.ActorCLI, Action: "workspace.delete",
			Target: fmt.Sprintf("workspace:%d", d.ws.ID), Detail: map[string]any{"campaigns_cancelled": d.campaigns, "messages_stopped": d.messages}})
	})
	return d, err
}
