package templates_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"herald/internal/db"
	"herald/internal/dbtest"
	"herald/internal/workspace"
	"herald/templates"
)

type storeBundle struct {
	ctx  context.Context
	pool *pgxpool.Pool
	a, b workspace.Workspace
}

func setupStore(t *testing.T) storeBundle {
	t.Helper()
	ctx := context.Background()
	pool := dbtest.NewPool(t)
	a, err := workspace.Ensure(ctx, pool, "acme")
	if err != nil {
		t.Fatal(err)
	}
	b, err := workspace.Ensure(ctx, pool, "bravo")
	if err != nil {
		t.Fatal(err)
	}
	return storeBundle{ctx: ctx, pool: pool, a: a, b: b}
}

func input(name, subject string) templates.Input {
	return templates.Input{Name: name, Subject: subject, HTML: `<p>Hi {{.name}}</p>`}
}

func TestCreateIncrementsVersions(t *testing.T) {
	t.Parallel()
	s := setupStore(t)
	for want := 1; want <= 3; want++ {
		got, err := templates.Create(s.ctx, s.pool, s.a.ID, input("welcome", "v"+string(rune('0'+want))))
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != want || got.CreatedAt.IsZero() || got.Name != "welcome" {
			t.Fatalf("Create #%d = %+v", want, got)
		}
	}
	// Another name and another workspace count from 1.
	for _, c := range []struct {
		ws   int64
		name string
	}{{s.a.ID, "receipt"}, {s.b.ID, "welcome"}} {
		got, err := templates.Create(s.ctx, s.pool, c.ws, input(c.name, "x"))
		if err != nil || got.Version != 1 {
			t.Fatalf("Create(%d, %s) = %+v, %v; want version 1", c.ws, c.name, got, err)
		}
	}

	latest, err := templates.Get(s.ctx, s.pool, s.a.ID, "welcome", 0)
	if err != nil || latest.Version != 3 || latest.Subject != "v3" {
		t.Fatalf("Get latest = %+v, %v", latest, err)
	}
	v2, err := templates.Get(s.ctx, s.pool, s.a.ID, "welcome", 2)
	if err != nil || v2.Version != 2 || v2.Subject != "v2" || v2.HTML != `<p>Hi {{.name}}</p>` {
		t.Fatalf("Get v2 = %+v, %v", v2, err)
	}
	for _, c := range []struct {
		ws      int64
		name    string
		version int
	}{
		{s.a.ID, "welcome", 4}, {s.a.ID, "nope", 0}, {s.a.ID, "welcome", -1}, {s.a.ID, "../x", 0},
		{s.b.ID, "receipt", 0}, {s.b.ID, "welcome", 2},
	} {
		if _, err := templates.Get(s.ctx, s.pool, c.ws, c.name, c.version); !errors.Is(err, db.ErrNotFound) {
			t.Errorf("Get(%d, %q, %d) = %v, want ErrNotFound", c.ws, c.name, c.version, err)
		}
	}
}

func TestCreateConcurrentSavesGetDistinctVersions(t *testing.T) {
	t.Parallel()
	s := setupStore(t)
	const n = 8
	var wg sync.WaitGroup
	versions := make(chan int, n)
	for range n {
		wg.Go(func() {
			got, err := templates.Create(s.ctx, s.pool, s.a.ID, input("race", "x"))
			if err != nil {
				t.Error(err)
				return
			}
			versions <- got.Version
		})
	}
	wg.Wait()
	close(versions)
	seen := map[int]bool{}
	for v := range versions {
		if seen[v] {
			t.Errorf("version %d stored twice", v)
		}
		seen[v] = true
	}
	if len(seen) != n {
		t.Errorf("got %d versions, want %d", len(seen), n)
	}
}

func TestCreateValidates(t *testing.T) {
	t.Parallel()
	s := setupStore(t)
	big := strings.Repeat("x", templates.MaxPartBytes+1)
	for _, tc := range []struct {
		name string
		in   templates.Input
		part string
	}{
		{"empty name", templates.Input{Subject: "s", Text: "t"}, "name"},
		{"bad name", templates.Input{Name: "a/b", Subject: "s", Text: "t"}, "name"},
		{"dot name", templates.Input{Name: "..", Subject: "s", Text: "t"}, "name"},
		{"long name", templates.Input{Name: strings.Repeat("a", 101), Subject: "s", Text: "t"}, "name"},
		{"no subject", templates.Input{Name: "a", Text: "t"}, "subject"},
		{"subject newline", templates.Input{Name: "a", Subject: "a\nBcc: x@example.com", Text: "t"}, "subject"},
		{"no body", templates.Input{Name: "a", Subject: "s"}, "html"},
		{"big html", templates.Input{Name: "a", Subject: "s", HTML: big}, "html"},
		{"big text", templates.Input{Name: "a", Subject: "s", Text: big}, "text"},
		{"html parse", templates.Input{Name: "a", Subject: "s", HTML: "{{if .x}}"}, "html"},
		{"text parse", templates.Input{Name: "a", Subject: "s", Text: "{{.x"}, "text"},
	} {
		_, err := templates.Create(s.ctx, s.pool, s.a.ID, tc.in)
		var pe *templates.PartError
		if !errors.As(err, &pe) || pe.Part != tc.part {
			t.Errorf("%s: err = %v, want a PartError for %s", tc.name, err, tc.part)
		}
	}
	var n int
	if err := s.pool.QueryRow(s.ctx, "SELECT count(*) FROM templates").Scan(&n); err != nil || n != 0 {
		t.Fatalf("invalid input stored %d rows (%v)", n, err)
	}
	ok, err := templates.Create(s.ctx, s.pool, s.a.ID, templates.Input{Name: "Order.Shipped_v2-x", Subject: "s", Text: "t"})
	if err != nil || ok.Version != 1 {
		t.Fatalf("valid name refused: %v", err)
	}
}

func TestVersionsAreImmutable(t *testing.T) {
	t.Parallel()
	s := setupStore(t)
	if _, err := templates.Create(s.ctx, s.pool, s.a.ID, input("welcome", "x")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(s.ctx, "UPDATE templates SET subject = 'changed'"); err == nil ||
		!strings.Contains(err.Error(), "immutable") {
		t.Fatalf("UPDATE of a version: err = %v, want refusal", err)
	}
}
