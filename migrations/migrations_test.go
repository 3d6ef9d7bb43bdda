package migrations_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"

	"herald/internal/db"
	"herald/internal/dbtest"
	"herald/migrations"
)

func TestMigrateConcurrentlyThenNoop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := db.Open(ctx, dbtest.NewEmptyDB(t), 10)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := migrations.CheckCurrent(ctx, pool); !errors.Is(err, migrations.ErrStale) {
		t.Fatalf("CheckCurrent on an empty database = %v, want ErrStale", err)
	}
	all, err := migrations.All()
	if err != nil || len(all) == 0 {
		t.Fatalf("All = %v, %v", all, err)
	}
	// Three `herald migrate` at once: the advisory lock lets one apply, the others find nothing to do.
	var wg sync.WaitGroup
	applied := make([][]string, 3)
	errs := make([]error, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			applied[i], errs[i] = migrations.Migrate(ctx, pool, logger)
		}()
	}
	wg.Wait()
	total := 0
	for i := range 3 {
		if errs[i] != nil {
			t.Fatalf("concurrent migrate %d: %v", i, errs[i])
		}
		total += len(applied[i])
	}
	if total != len(all) {
		t.Errorf("applied %d migrations in all, want %d (each exactly once)", total, len(all))
	}
	if err := migrations.CheckCurrent(ctx, pool); err != nil {
		t.Fatalf("CheckCurrent after migrate: %v", err)
	}
	again, err := migrations.Migrate(ctx, pool, logger)
	if err != nil || len(again) != 0 {
		t.Fatalf("second migrate applied %v, %v", again, err)
	}
	var riverTable bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass('river_job') IS NOT NULL").Scan(&riverTable); err != nil || !riverTable {
		t.Errorf("River's tables were not migrated: %v %v", riverTable, err)
	}
}
