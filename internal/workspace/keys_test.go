package workspace_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"herald/internal/dbtest"
	"herald/internal/workspace"
)

func TestKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewPool(t)

	a, err := workspace.Ensure(ctx, pool, "acme")
	if err != nil {
		t.Fatal(err)
	}
	again, err := workspace.Ensure(ctx, pool, "acme")
	if err != nil || again.ID != a.ID {
		t.Fatalf("Ensure twice: got %v, %v; want id %d", again, err, a.ID)
	}
	if _, err := workspace.Ensure(ctx, pool, "Bad Name"); err == nil {
		t.Fatal("Ensure accepted an invalid name")
	}
	key, err := workspace.CreateKey(ctx, pool, a.ID, []string{workspace.ScopeMessagesSend})
	if err != nil {
		t.Fatal(err)
	}
	var stored int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM api_keys WHERE position($1 in encode(hash, 'escape')) > 0", key).Scan(&stored); err != nil || stored != 0 {
		t.Fatalf("the key is stored in clear (%d rows, %v)", stored, err)
	}
	p, err := workspace.Authenticate(ctx, pool, key)
	if err != nil {
		t.Fatal(err)
	}
	if p.WorkspaceID != a.ID || !p.Has(workspace.ScopeMessagesSend) || p.Has(workspace.ScopeContactsWrite) {
		t.Fatalf("principal = %+v", p)
	}
	for _, bad := range []string{"", "hrld_", key + "x", strings.ToUpper(key), "Bearer " + key, key[:len(key)-1]} {
		if _, err := workspace.Authenticate(ctx, pool, bad); !errors.Is(err, workspace.ErrBadKey) {
			t.Errorf("Authenticate(%q) = %v, want ErrBadKey", bad, err)
		}
	}
	if _, err := pool.Exec(ctx, "UPDATE api_keys SET revoked_at = now()"); err != nil {
		t.Fatal(err)
	}
	if _, err := workspace.Authenticate(ctx, pool, key); !errors.Is(err, workspace.ErrBadKey) {
		t.Fatalf("revoked key authenticated: %v", err)
	}
}

func TestParseScopes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"messages:send", "messages:send", true},
		{" messages:send , admin,messages:send", "messages:send,admin", true},
		{"", "", false},
		{"root", "", false},
		{"messages:send,ad\r\nmin", "", false},
	} {
		got, err := workspace.ParseScopes(tc.in)
		if (err == nil) != tc.ok || strings.Join(got, ",") != tc.want {
			t.Errorf("ParseScopes(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestAuthenticatorCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewPool(t)
	w, _ := workspace.Ensure(ctx, pool, "acme")
	key, err := workspace.CreateKey(ctx, pool, w.ID, []string{workspace.ScopeAdmin})
	if err != nil {
		t.Fatal(err)
	}
	a := &workspace.Authenticator{DB: pool, TTL: 300 * time.Millisecond}
	if p, err := a.Authenticate(ctx, key); err != nil || p.WorkspaceID != w.ID {
		t.Fatalf("first: %+v %v", p, err)
	}
	if _, err := a.Authenticate(ctx, key+"x"); !errors.Is(err, workspace.ErrBadKey) {
		t.Fatalf("unknown key: %v", err)
	}
	if _, err := pool.Exec(ctx, "UPDATE api_keys SET revoked_at = now()"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, key); err != nil {
		t.Fatalf("within TTL the cached principal is used: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := a.Authenticate(ctx, key)
		if errors.Is(err, workspace.ErrBadKey) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("revoked key still accepted after the TTL")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEnsureDeleted: a deleted workspace is not handed out again (so no key is made in it) until
// the retention job purges it; other workspaces are unaffected.
func TestEnsureDeleted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewPool(t)
	if _, err := workspace.Ensure(ctx, pool, "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := workspace.SoftDelete(ctx, pool, "gone", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := workspace.Ensure(ctx, pool, "gone"); !errors.Is(err, workspace.ErrDeleted) || !strings.Contains(err.Error(), `"gone"`) {
		t.Fatalf("Ensure of a deleted workspace: %v", err)
	}
	if _, err := workspace.Ensure(ctx, pool, "kept"); err != nil {
		t.Fatal(err)
	}
}
