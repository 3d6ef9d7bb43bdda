package campaigns_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"herald/campaigns"
)

// TestSegmentLanguage evaluates each feature of the filter language on real rows.
func TestSegmentLanguage(t *testing.T) {
	t.Parallel()
	b := audSetup(t)
	b.contact(t, b.wsA, "c1", "ann@example.com", map[string]any{"plan": "pro", "seats": 10, "vip": true,
		"tags": []any{"a", "vip"}, "note": `50% off_now\x`, "nil_attr": nil, "score": 1.5})
	b.contact(t, b.wsA, "c2", "bob@Example.ORG", map[string]any{"plan": "free", "seats": "10", "vip": false, "tags": "vip"})
	b.contact(t, b.wsA, "c3", "carol@test.net", nil)
	b.contact(t, b.wsA, "c4", "dave@example.com", map[string]any{"plan": 5, "seats": 3})
	// Another workspace's contact matches everything but is never seen.
	b.contact(t, b.wsB, "b1", "ann@example.com", map[string]any{"plan": "pro", "seats": 10, "vip": true})
	for _, c := range []struct{ id, name, locale, tz string }{
		{"c1", "Ann O'Neil", "en", "Europe/Berlin"}, {"c2", "Bob", "de", "America/New_York"},
		{"c3", "Carol 100%", "fr", ""}, {"c4", "'; DROP TABLE contacts; --", "", ""},
	} {
		if _, err := b.pool.Exec(b.ctx, `UPDATE contacts SET name = $2, locale = $3, timezone = $4 WHERE external_id = $1`,
			c.id, c.name, c.locale, c.tz); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		filter string
		want   string
	}{
		{`attributes.plan = "pro"`, "c1"},
		{`attributes.seats = 10`, "c1"},   // c2's "10" is a string: mixed types do not match
		{`attributes.seats = "10"`, "c2"}, // and the other way round
		{`attributes.seats = 10.0`, "c1"}, // numbers compare as numbers
		{`attributes.seats >= 5`, "c1"},
		{`attributes.seats < 5`, "c4"},
		{`attributes.seats != 10`, "c4"},          // != needs a value of the same type
		{`not attributes.seats = 10`, "c2 c3 c4"}, // not includes the rest
		{`attributes.score > 1 and attributes.score < 2`, "c1"},
		{`attributes.vip = true`, "c1"},
		{`attributes.vip = false`, "c2"},
		{`attributes.vip != true`, "c2"},
		{`attributes.nil_attr = null`, "c1 c2 c3 c4"}, // JSON null or missing
		{`attributes.nil_attr != null`, ""},
		{`attributes.plan != null`, "c1 c2 c4"},
		{`attributes.nil_attr exists`, "c1"},
		{`attributes.plan exists and not attributes.vip exists`, "c4"},
		{`attributes.tags contains "vip"`, "c1 c2"}, // an array element, or a substring
		{`attributes.tags contains "a"`, "c1"},
		{`attributes.plan in ("pro", "free")`, "c1 c2"},
		{`attributes.plan in (5, "x")`, "c4"},
		{`attributes.plan not in ("pro")`, "c2"}, // c4's plan is a number, c3 has none
		{`attributes.plan < "g"`, "c2"},
		{`attributes.note contains "50%"`, "c1"},
		{`attributes.note contains "o_f"`, ""}, // _ is not a wildcard
		{`attributes.note contains "f_n"`, "c1"},
		{`attributes.note ends_with "\\x"`, "c1"},
		{`attributes.note starts_with "%"`, ""},
		{`name contains "%"`, "c3"},
		{`name ends_with "100%"`, "c3"},
		{`name starts_with "Carol"`, "c3"},
		{`name contains "_"`, ""},
		{`name = "Bob"`, "c2"},
		{`name = "'; DROP TABLE contacts; --"`, "c4"},
		{`name = "Ann O'Neil"`, "c1"},
		{`email = "bob@EXAMPLE.org"`, "c2"}, // normalised as stored addresses are
		{`email in ("ann@EXAMPLE.com", "dave@example.com")`, "c1 c4"},
		{`email ends_with "@example.com"`, "c1 c4"},
		{`email != "ann@example.com"`, "c2 c3 c4"},
		{`locale in ("en", "de")`, "c1 c2"},
		{`locale not in ("en")`, "c2 c3 c4"},
		{`locale = ""`, "c4"},
		{`timezone = "Europe/Berlin"`, "c1"},
		{`external_id = "c3"`, "c3"},
		{`external_id > "c2"`, "c3 c4"},
		{`created_at > "2000-01-01"`, "c1 c2 c3 c4"},
		{`created_at < "2000-01-01T00:00:00Z"`, ""},
		{`updated_at <= "2999-12-31T23:59:59+14:00"`, "c1 c2 c3 c4"},
		{`(attributes.plan = "pro" or attributes.plan = "free") and not locale = "de"`, "c1"},
		{`NOT (attributes.vip = true) AND attributes.seats exists`, "c2 c4"},
		{`attributes.plan = "pro" OR attributes.plan = "free" AND locale = "fr"`, "c1"}, // and binds tighter
		{`attributes.plan = "x\"); DROP TABLE contacts; --"`, ""},
	} {
		count, sample, err := campaigns.SegmentPreview(b.ctx, b.pool, b.wsA, tc.filter)
		if err != nil {
			t.Errorf("%s: %v", tc.filter, err)
			continue
		}
		got := strings.Join(audSorted(sample), " ")
		if got != tc.want || int(count) != len(sample) {
			t.Errorf("%s: got %q (count %d), want %q", tc.filter, got, count, tc.want)
		}
	}
	if n := b.count(t, `SELECT count(*) FROM contacts`); n != 5 {
		t.Fatalf("%d contacts left", n)
	}
}

func TestSegmentsAPI(t *testing.T) {
	t.Parallel()
	b := audSetup(t)
	for i := range 12 {
		b.contact(t, b.wsA, "a"+string(rune('a'+i)), string(rune('a'+i))+"@example.com", map[string]any{"n": i})
	}
	b.contact(t, b.wsB, "b1", "b1@example.com", map[string]any{"n": 1})

	res := b.do(t, http.MethodPost, "/v1/segments", b.keyA, map[string]string{"name": "big", "filter": "attributes.n >= 5"})
	if res.Status != http.StatusCreated || res.Body["filter"] != "attributes.n >= 5" || res.Header.Get("Location") != "/v1/segments/big" {
		t.Fatalf("create: %d %s", res.Status, res.Raw)
	}
	res = b.do(t, http.MethodPost, "/v1/segments", b.keyA, map[string]string{"name": "big", "filter": "attributes.n >= 10"})
	if res.Status != http.StatusOK || res.Body["filter"] != "attributes.n >= 10" {
		t.Fatalf("update: %d %s", res.Status, res.Raw)
	}
	res = b.do(t, http.MethodGet, "/v1/segments/big", b.keyA, nil)
	if res.Status != http.StatusOK || res.Body["name"] != "big" {
		t.Fatalf("get: %d %s", res.Status, res.Raw)
	}
	b.do(t, http.MethodGet, "/v1/segments/big", b.keyB, nil).RequireProblem(t, http.StatusNotFound, "")
	b.do(t, http.MethodDelete, "/v1/segments/big", b.keyB, nil).RequireProblem(t, http.StatusNotFound, "")

	// A bad filter is a 422 with the position, and nothing is stored.
	res = b.do(t, http.MethodPost, "/v1/segments", b.keyA, map[string]string{"name": "bad", "filter": `attributes.n >= 5 and attributes.a'b = 1`})
	p := res.RequireProblem(t, http.StatusUnprocessableEntity, "filter")
	if pos, _ := res.Body["position"].(float64); pos != 35 || !strings.Contains(p.Detail, "position 35") {
		t.Fatalf("bad filter: %s", res.Raw)
	}
	b.do(t, http.MethodGet, "/v1/segments/bad", b.keyA, nil).RequireProblem(t, http.StatusNotFound, "")

	for _, bad := range []struct {
		body  any
		field string
		code  int
	}{
		{map[string]string{"name": "Bad Name", "filter": "attributes.n = 1"}, "name", 422},
		{map[string]string{"name": "x\r\ny", "filter": "attributes.n = 1"}, "name", 422},
		{map[string]string{"name": "<script>", "filter": "attributes.n = 1"}, "name", 422},
		{map[string]string{"name": "ok", "filter": ""}, "filter", 422},
		{map[string]any{"name": "ok", "filter": 5}, "filter", 422},
		{map[string]string{"name": "ok", "filter": strings.Repeat(" ", 5000) + "x"}, "filter", 422},
		{map[string]any{"name": "ok", "filter": "attributes.n = 1", "admin": true}, "admin", 422},
		{`{"name": "ok", "filter": "` + strings.Repeat("a", 5<<20) + `"}`, "", 413},
	} {
		b.do(t, http.MethodPost, "/v1/segments", b.keyA, bad.body).RequireProblem(t, bad.code, bad.field)
	}
	b.do(t, http.MethodPost, "/v1/segments", b.keyAContact, map[string]string{"name": "x", "filter": "attributes.n = 1"}).
		RequireProblem(t, http.StatusForbidden, "")
	b.do(t, http.MethodPost, "/v1/segments", "", map[string]string{"name": "x", "filter": "attributes.n = 1"}).
		RequireProblem(t, http.StatusUnauthorized, "")
	if n := b.count(t, `SELECT count(*) FROM segments`); n != 1 {
		t.Fatalf("%d segments stored", n)
	}

	// Preview: the count and the first ten external ids, this workspace only.
	res = b.do(t, http.MethodPost, "/v1/segments/preview", b.keyA, map[string]string{"filter": "attributes.n >= 1"})
	sample, _ := res.Body["sample"].([]any)
	if res.Status != http.StatusOK || res.Body["count"] != float64(11) || len(sample) != 10 || sample[0] != "ab" {
		t.Fatalf("preview: %d %s", res.Status, res.Raw)
	}
	res = b.do(t, http.MethodPost, "/v1/segments/preview", b.keyA, map[string]string{"filter": `name = "`})
	res.RequireProblem(t, http.StatusUnprocessableEntity, "filter")
	if res.Body["position"] != float64(8) {
		t.Fatalf("preview of a bad filter: %s", res.Raw)
	}

	// Cursor paging by name.
	for _, n := range []string{"s1", "s2", "s3", "s4"} {
		b.segment(t, b.wsA, n, "attributes.n = 1")
	}
	var names []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		path := "/v1/segments?limit=2"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		res := b.do(t, http.MethodGet, path, b.keyA, nil)
		for _, s := range res.Body["segments"].([]any) {
			names = append(names, s.(map[string]any)["name"].(string))
		}
		next, _ := res.Body["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	if !slices.Equal(names, []string{"big", "s1", "s2", "s3", "s4"}) {
		t.Fatalf("pages: %v", names)
	}
	b.do(t, http.MethodGet, "/v1/segments?cursor=!!", b.keyA, nil).RequireProblem(t, http.StatusUnprocessableEntity, "cursor")
	b.do(t, http.MethodGet, "/v1/segments?limit=0", b.keyA, nil).RequireProblem(t, http.StatusUnprocessableEntity, "limit")
	res = b.do(t, http.MethodGet, "/v1/segments", b.keyB, nil)
	if segs := res.Body["segments"].([]any); len(segs) != 0 {
		t.Fatalf("B sees A's segments: %s", res.Raw)
	}
	if res := b.do(t, http.MethodDelete, "/v1/segments/s1", b.keyA, nil); res.Status != http.StatusNoContent {
		t.Fatalf("delete: %d", res.Status)
	}
	b.do(t, http.MethodGet, "/v1/segments/s1", b.keyA, nil).RequireProblem(t, http.StatusNotFound, "")
}
