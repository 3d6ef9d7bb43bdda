package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"herald/consent"
	"herald/internal/contacts"
	"herald/internal/db"
	"herald/internal/dbtest"
	"herald/internal/workspace"
)

func TestConsentVerify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := dbtest.NewDB(t)
	env := map[string]string{"DATABASE_URL": url}
	pool, err := db.Open(ctx, url, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	svc := &consent.Service{Keys: consent.DevKeys(), Metrics: consent.NewMetrics(prometheus.NewRegistry())}
	// Two workspaces with three events each; "broken" has its second event altered.
	ids := map[string][]int64{}
	for _, name := range []string{"intact", "broken", "empty"} {
		ws, err := workspace.Ensure(ctx, pool, name)
		if err != nil {
			t.Fatal(err)
		}
		if name == "empty" {
			continue
		}
		c, _, err := contacts.Upsert(ctx, pool, ws.ID, contacts.Input{ExternalID: "c1", Email: "c1@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, _, err := consent.PurposeSave(ctx, tx, consent.Purpose{WorkspaceID: ws.ID, Name: "news", Title: "News", Notice: "News."}); err != nil {
				return err
			}
			for _, action := range []string{consent.ActionGranted, consent.ActionWithdrawn, consent.ActionGranted} {
				e := &consent.Event{WorkspaceID: ws.ID, ContactID: c.ID, Purpose: "news", Action: action, Source: consent.SourceAPI,
					LawfulBasis: consent.BasisConsent, NoticeVersion: 1, Actor: "test"}
				if err := svc.Record(ctx, tx, e); err != nil {
					return err
				}
				ids[name] = append(ids[name], e.ID)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE consent_events SET action = 'granted' WHERE id = $1`, ids["broken"][1])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		args       []string
		code       int
		stdout     string
		stderrHas  []string
		stderrNone bool
	}{
		{[]string{"consent", "verify", "--workspace", "intact"}, 0, "workspace intact: 3 events verify\n", nil, true},
		{[]string{"consent", "verify", "--workspace", "empty"}, 0, "workspace empty: 0 events verify\n", nil, true},
		{[]string{"consent", "verify", "--workspace", "broken"}, 1, "",
			[]string{"workspace broken", fmt.Sprintf("event %d (seq 2)", ids["broken"][1]), "altered"}, false},
		{[]string{"consent", "verify", "--workspace", "nobody"}, 1, "", []string{`workspace "nobody"`, "not found"}, false},
		{[]string{"consent", "verify", "--workspace", "Bad Name"}, 1, "", []string{"workspace name"}, false},
		{[]string{"consent", "verify"}, 1, "", []string{"--workspace is required"}, false},
		{[]string{"consent", "verify", "--workspace", "intact", "extra"}, 1, "", []string{"usage"}, false},
		{[]string{"consent"}, 1, "", []string{"usage: herald consent verify"}, false},
		{[]string{"consent", "repair"}, 1, "", []string{"usage: herald consent verify"}, false},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCmd(t, ctx, env, tc.args...)
			if code != tc.code || stdout != tc.stdout {
				t.Fatalf("code %d, stdout %q, stderr %q; want %d, %q", code, stdout, stderr, tc.code, tc.stdout)
			}
			if tc.stderrNone && stderr != "" {
				t.Fatalf("stderr %q; want none", stderr)
			}
			for _, s := range tc.stderrHas {
				if !strings.Contains(stderr, s) {
					t.Fatalf("stderr %q; want it to mention %q", stderr, s)
				}
			}
			if tc.code != 0 && strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Fatalf("stderr is not one line: %q", stderr)
			}
		})
	}
}
