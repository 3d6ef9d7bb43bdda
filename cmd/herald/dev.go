package main

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"

	"herald/internal/workspace"
)

// demoKey makes sure the "demo" workspace exists and returns a new key for it with every scope.
func demoKey(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	ws, err := workspace.Ensure(ctx, pool, "demo")
	if err != nil {
		return "", err
	}
	return workspace.CreateKey(ctx, pool, ws.ID, workspace.AllScopes)
}
