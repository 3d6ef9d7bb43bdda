package workspace_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"herald/internal/dbtest"
	"herald/internal/workspace"
)

// TestCreateKeyAudited: every key creation writes an api_key.create entry in the same statement,
// naming the key by id and public prefix, never by the key.
func TestCreateKeyAudited(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewPool(t)
	w, err := workspace.Ensure(ctx, pool, "acme")
	if err != nil {
		t.Fatal(err)
	}
	key, err := workspace.CreateKey(ctx, pool, w.ID, []string{workspace.ScopePrivacy, workspace.ScopeContactsWrite})
	if err != nil {
		t.Fatal(err)
	}
	other, err := workspace.CreateKeyAs(ctx, pool, w.ID, []string{workspace.ScopeAdmin}, "api_key:1")
	if err != nil {
		t.Fatal(err)
	}
	p, err := workspace.Authenticate(ctx, pool, key)
	if err != nil {
		t.Fatal(err)
	}
	if p.Actor() != "api_key:"+strconv.FormatInt(p.KeyID, 10) || !p.Has(workspace.ScopePrivacy) || p.Has(workspace.ScopeAdmin) {
		t.Fatalf("principal %+v, actor %s", p, p.Actor())
	}
	rows, err := pool.Query(ctx, `SELECT actor, target, detail::text FROM audit_log WHERE workspace_id = $1 AND action = 'api_key.create' ORDER BY id`, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var actor, target, detail string
		if err := rows.Scan(&actor, &target, &detail); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(detail, key[len("hrld_")+6:]) || strings.Contains(detail, other[len("hrld_")+6:]) {
			t.Fatalf("the audit holds a key: %s", detail)
		}
		got = append(got, actor+" "+target+" "+detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`cli api_key:` + strconv.FormatInt(p.KeyID, 10) + ` {"prefix": "` + key[:11] + `", "scopes": ["privacy", "contacts:write"]}`,
		`api_key:1 api_key:` + strconv.FormatInt(p.KeyID+1, 10) + ` {"prefix": "` + other[:11] + `", "scopes": ["admin"]}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// ParseScopes knows the privacy scope.
	if sc, err := workspace.ParseScopes("privacy"); err != nil || sc[0] != workspace.ScopePrivacy {
		t.Fatalf("ParseScopes(privacy) = %v, %v", sc, err)
	}
}
