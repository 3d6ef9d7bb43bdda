package campaigns_test

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"herald/campaigns"
	"herald/internal/httpx"
)

// walk pages through the audience with the given page size and returns the members' external ids
// in order, checking that ids ascend and that only the last page is short.
func (b *audBundle) walk(tb testing.TB, ws int64, a campaigns.Audience, size int) []string {
	tb.Helper()
	var out []string
	var after int64
	for pages := 0; ; pages++ {
		if pages > 1000 {
			tb.Fatal("the walk does not end")
		}
		page, err := campaigns.AudiencePage(b.ctx, b.pool, ws, a, after, size)
		if err != nil {
			tb.Fatal(err)
		}
		for _, m := range page {
			if m.ContactID <= after {
				tb.Fatalf("contact %d after %d", m.ContactID, after)
			}
			after = m.ContactID
			out = append(out, m.ExternalID)
		}
		if len(page) < size {
			return out
		}
	}
}

func TestAudienceMembers(t *testing.T) {
	t.Parallel()
	b := audSetup(t)
	id := map[string]int64{}
	for _, c := range []struct {
		ext, email string
		attrs      map[string]any
	}{
		{"x-out", "shared@example.com", nil},                                       // same address, in no list: must not hide "shared"
		{"shared", "shared@example.com", nil},                                      // in lists one and two: one email
		{"one", "one@example.com", nil},                                            // list one
		{"two", "two@example.com", nil},                                            // list two
		{"both-case", "Both@example.com", nil},                                     // list one
		{"both-lower", "both@EXAMPLE.com", nil},                                    // list two: same address up to case, higher id
		{"pro", "pro@example.com", map[string]any{"plan": "pro"}},                  // segment pro only
		{"pro-one", "one@example.com", map[string]any{"plan": "pro"}},              // repeats one's address: one wins
		{"excluded", "excluded@example.com", nil},                                  // list one and the exclusion list
		{"vip-out", "vip@example.com", map[string]any{"plan": "pro", "vip": true}}, // excluded by a segment
		{"vip-dup", "vip@example.com", nil},                                        // list one; same address as an excluded contact
		{"noemail", "noemail@example.com", nil},                                    // list one, email erased below
	} {
		id[c.ext] = b.contact(t, b.wsA, c.ext, c.email, c.attrs)
	}
	if _, err := b.pool.Exec(b.ctx, `UPDATE contacts SET email = '' WHERE id = $1`, id["noemail"]); err != nil {
		t.Fatal(err)
	}
	b.list(t, b.wsA, "one", id["shared"], id["one"], id["both-case"], id["excluded"], id["vip-dup"], id["noemail"])
	b.list(t, b.wsA, "two", id["shared"], id["two"], id["both-lower"])
	b.list(t, b.wsA, "blocked", id["excluded"])
	b.segment(t, b.wsA, "pro", `attributes.plan = "pro"`)
	b.segment(t, b.wsA, "vip", `attributes.vip = true`)
	// Workspace B has a list of the same name with A's... own contacts only.
	bc := b.contact(t, b.wsB, "b-one", "one@example.com", nil)
	b.list(t, b.wsB, "one", bc)

	full := campaigns.Audience{Lists: []string{"one", "two"}, Segments: []string{"pro"},
		ExcludeLists: []string{"blocked"}, ExcludeSegments: []string{"vip"}}
	want := []string{"shared", "one", "two", "both-case", "pro", "vip-dup"}
	for _, tc := range []struct {
		name string
		a    campaigns.Audience
		want []string
	}{
		{"full", full, want},
		{"list one", campaigns.Audience{Lists: []string{"one"}}, []string{"shared", "one", "both-case", "excluded", "vip-dup"}},
		{"two lists dedupe", campaigns.Audience{Lists: []string{"one", "two"}}, []string{"shared", "one", "two", "both-case", "excluded", "vip-dup"}},
		{"segment only", campaigns.Audience{Segments: []string{"pro"}}, []string{"pro", "pro-one", "vip-out"}},
		{"segment minus segment", campaigns.Audience{Segments: []string{"pro"}, ExcludeSegments: []string{"vip"}}, []string{"pro", "pro-one"}},
		{"list minus list", campaigns.Audience{Lists: []string{"one"}, ExcludeLists: []string{"blocked"}}, []string{"shared", "one", "both-case", "vip-dup"}},
		{"everything excluded", campaigns.Audience{Lists: []string{"blocked"}, ExcludeLists: []string{"blocked"}}, nil},
		{"repeated names", campaigns.Audience{Lists: []string{"two", "two"}}, []string{"shared", "two", "both-lower"}},
	} {
		for _, size := range []int{1, 2, 3, len(tc.want), 10_000} {
			if size == 0 {
				continue
			}
			got := b.walk(t, b.wsA, tc.a, size)
			if !slices.Equal(got, tc.want) {
				t.Errorf("%s, pages of %d: %v, want %v", tc.name, size, got, tc.want)
			}
		}
		n, err := campaigns.AudienceCount(b.ctx, b.pool, b.wsA, tc.a)
		if err != nil || n != int64(len(tc.want)) {
			t.Errorf("%s: count %d, %v; want %d", tc.name, n, err, len(tc.want))
		}
	}

	// Members carry the contact's fields; after the last member there is nothing.
	page, err := campaigns.AudiencePage(b.ctx, b.pool, b.wsA, full, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	m := page[slices.IndexFunc(page, func(m campaigns.Member) bool { return m.ExternalID == "pro" })]
	if m.ContactID != id["pro"] || m.Email != "pro@example.com" || m.Name != "Name pro" || m.Attributes["plan"] != "pro" {
		t.Fatalf("member: %+v", m)
	}
	if page, err := campaigns.AudiencePage(b.ctx, b.pool, b.wsA, full, page[len(page)-1].ContactID, 100); err != nil || len(page) != 0 {
		t.Fatalf("after the last member: %v, %v", page, err)
	}
	if page, err := campaigns.AudiencePage(b.ctx, b.pool, b.wsA, full, id["two"], 2); err != nil || len(page) != 2 || page[0].ExternalID != "both-case" {
		t.Fatalf("from the middle: %v, %v", page, err)
	}

	// Segments are evaluated when the page is read.
	if _, err := b.pool.Exec(b.ctx, `UPDATE contacts SET attributes = '{"plan": "pro"}' WHERE id = $1`, id["two"]); err != nil {
		t.Fatal(err)
	}
	if got := b.walk(t, b.wsA, campaigns.Audience{Segments: []string{"pro"}}, 10); !slices.Equal(got, []string{"two", "pro", "pro-one", "vip-out"}) {
		t.Fatalf("after the attribute change: %v", got)
	}

	// Workspace B's list "one" holds only B's contact.
	if got := b.walk(t, b.wsB, campaigns.Audience{Lists: []string{"one"}}, 10); !slices.Equal(got, []string{"b-one"}) {
		t.Fatalf("B's list: %v", got)
	}
}

func TestAudienceValidate(t *testing.T) {
	t.Parallel()
	b := audSetup(t)
	b.list(t, b.wsA, "news")
	b.segment(t, b.wsA, "pro", `attributes.plan = "pro"`)
	b.list(t, b.wsB, "theirs")
	b.segment(t, b.wsB, "their-seg", `attributes.plan = "pro"`)
	// A stored filter that no longer compiles (written behind the API's back) is reported.
	if _, err := b.pool.Exec(b.ctx, `INSERT INTO segments (workspace_id, name, filter) VALUES ($1, 'broken', 'plan = 1')`, b.wsA); err != nil {
		t.Fatal(err)
	}
	many := make([]string, 51)
	for i := range many {
		many[i] = fmt.Sprintf("l%d", i)
	}
	for _, tc := range []struct {
		a      campaigns.Audience
		field  string
		detail string
	}{
		{campaigns.Audience{}, "lists", "at least one"},
		{campaigns.Audience{ExcludeLists: []string{"news"}}, "lists", "at least one"},
		{campaigns.Audience{Lists: []string{"nope"}}, "lists", "no list named nope"},
		{campaigns.Audience{Lists: []string{"theirs"}}, "lists", "no list named theirs"},
		{campaigns.Audience{Segments: []string{"their-seg"}}, "segments", "no segment named their-seg"},
		{campaigns.Audience{Lists: []string{"news"}, ExcludeSegments: []string{"nope"}}, "exclude_segments", "no segment"},
		{campaigns.Audience{Lists: []string{"news"}, ExcludeLists: []string{"pro"}}, "exclude_lists", "no list named pro"},
		{campaigns.Audience{Lists: []string{"News\r\nX"}}, "lists", "not a valid name"},
		{campaigns.Audience{Lists: []string{"'; DROP TABLE lists; --"}}, "lists", "not a valid name"},
		{campaigns.Audience{Lists: many}, "lists", "at most 50"},
		{campaigns.Audience{Segments: []string{"broken"}}, "segments", "no longer compiles"},
	} {
		err := tc.a.Validate(b.ctx, b.pool, b.wsA)
		var p *httpx.Problem
		if !errors.As(err, &p) || p.Status != 422 || p.Field != tc.field || !strings.Contains(p.Detail, tc.detail) {
			t.Errorf("%+v: %v; want a 422 on %s saying %q", tc.a, err, tc.field, tc.detail)
		}
		if _, err := campaigns.AudiencePage(b.ctx, b.pool, b.wsA, tc.a, 0, 10); !errors.As(err, &p) {
			t.Errorf("%+v: AudiencePage: %v", tc.a, err)
		}
	}
	for _, ok := range []campaigns.Audience{{Lists: []string{"news"}}, {Segments: []string{"pro"}, ExcludeLists: []string{"news"}}} {
		if err := ok.Validate(b.ctx, b.pool, b.wsA); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
}

func TestAudiencePreviewAPI(t *testing.T) {
	t.Parallel()
	b := audSetup(t)
	a1 := b.contact(t, b.wsA, "a1", "a1@example.com", map[string]any{"plan": "pro"})
	a2 := b.contact(t, b.wsA, "a2", "a1@EXAMPLE.com", nil)
	a3 := b.contact(t, b.wsA, "a3", "a3@example.com", nil)
	b.list(t, b.wsA, "news", a1, a2, a3)
	b.list(t, b.wsA, "stop", a3)
	b.list(t, b.wsB, "theirs")
	b.segment(t, b.wsA, "pro", `attributes.plan = "pro"`)
	res := b.do(t, http.MethodPost, "/v1/audiences/preview", b.keyA, map[string]any{"lists": []string{"news"}, "exclude_lists": []string{"stop"}})
	if res.Status != http.StatusOK || res.Body["count"] != float64(1) {
		t.Fatalf("preview: %d %s", res.Status, res.Raw)
	}
	res = b.do(t, http.MethodPost, "/v1/audiences/preview", b.keyA, map[string]any{"segments": []string{"pro"}, "lists": []string{"stop"}})
	if res.Status != http.StatusOK || res.Body["count"] != float64(2) {
		t.Fatalf("preview: %d %s", res.Status, res.Raw)
	}
	b.do(t, http.MethodPost, "/v1/audiences/preview", b.keyA, map[string]any{"lists": []string{"theirs"}}).
		RequireProblem(t, http.StatusUnprocessableEntity, "lists")
	b.do(t, http.MethodPost, "/v1/audiences/preview", b.keyA, map[string]any{}).
		RequireProblem(t, http.StatusUnprocessableEntity, "lists")
	b.do(t, http.MethodPost, "/v1/audiences/preview", b.keyA, map[string]any{"lists": "news"}).
		RequireProblem(t, http.StatusUnprocessableEntity, "lists")
	b.do(t, http.MethodPost, "/v1/audiences/preview", b.keyASend, map[string]any{"lists": []string{"news"}}).
		RequireProblem(t, http.StatusForbidden, "")
}
