package campaigns_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"herald/campaigns"
)

func TestCompileSegmentRefused(t *testing.T) {
	t.Parallel()
	nest := func(n int) string { return strings.Repeat("(", n) + `name = "a"` + strings.Repeat(")", n) }
	cmps := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf("attributes.k%d = %d", i, i)
		}
		return strings.Join(parts, " or ")
	}
	for _, tc := range []struct {
		filter string
		pos    int
		detail string
	}{
		{``, 1, "empty"},
		{`   `, 1, "empty"},
		{`plan = "pro"`, 1, "unknown field"},
		{`Email = "a@b.com"`, 1, "unknown field"},
		{`attributes = 1`, 1, "attributes.KEY"},
		{`attributes.a'b = 1`, 13, "unexpected character"},
		{`attributes.a'; DROP TABLE contacts; -- = 1`, 13, "unexpected character"},
		{`attributes. = 1`, 12, "attribute key"},
		{`attributes.` + strings.Repeat("k", 65) + ` = 1`, 12, "attribute key"},
		{`attributes.a.b = 1`, 13, "unexpected character"},
		{`email = 5`, 9, "text"},
		{`email exists`, 7, "attributes only"},
		{`name = "abc`, 8, "unterminated"},
		{`name = "a\nb"`, 10, "escapes"},
		{"name = \"a\x01b\"", 10, "control"},
		{"name = \"a\x00\"", 10, "control"},
		{"name = \"\xff\"", 1, "UTF-8"},
		{`name = 'single'`, 8, "unexpected character"},
		{`created_at > "yesterday"`, 14, "date"},
		{`created_at contains "2020"`, 12, "compares with"},
		{`created_at > 2020`, 14, "string"},
		{`attributes.x > true`, 16, "numbers or strings"},
		{`attributes.x < null`, 16, "null"},
		{`attributes.x in ()`, 18, "expected a value"},
		{`attributes.x in "a"`, 17, "expected ("},
		{`attributes.x in ("a" "b")`, 22, "expected , or )"},
		{`attributes.x not like "a"`, 18, "expected in"},
		{`attributes.x starts_with 5`, 26, "string"},
		{`attributes.x = 1 and`, 21, "unexpected end"},
		{`attributes.x = 1 and or`, 22, "unknown field"},
		{`(attributes.x = 1`, 18, "expected )"},
		{`attributes.x = 1)`, 17, "expected and, or"},
		{`name = "a" name = "b"`, 12, "expected and, or"},
		{`name`, 5, "expected an operator"},
		{`name ~ "a"`, 6, "unexpected character"},
		{`name ! "a"`, 6, "expected !="},
		{`name == "a"`, 7, "expected a value"},
		{`attributes.x = 01`, 16, "malformed number"},
		{`attributes.x = 1.`, 16, "decimal point"},
		{`attributes.x = -`, 16, "expected a number"},
		{`attributes.x = 1e`, 16, "exponent"},
		{`attributes.x = 1e999`, 16, "out of range"},
		{`attributes.x = 0e2000`, 16, "out of range"},
		{`attributes.x = 1x`, 16, "malformed number"},
		{`attributes.x = ` + strings.Repeat("1", 41), 16, "at most"},
		{`name = "é" and nom = "x"`, 16, "unknown field"}, // positions count characters
		{nest(33), 34, "nests"},
		{strings.Repeat("not ", 33) + `name = "a"`, 133, "nests"},
		{cmps(101), 1 + strings.Index(cmps(101), "attributes.k100 "), "at most 100 comparisons"},
		{`name = "` + strings.Repeat("a", 4090) + `"`, 1, "at most 4096 bytes"},
	} {
		_, _, err := campaigns.CompileSegment(tc.filter, "c", nil)
		var fe *campaigns.FilterError
		if !errors.As(err, &fe) {
			t.Errorf("%.60q: err = %v, want a FilterError", tc.filter, err)
			continue
		}
		if fe.Position != tc.pos || !strings.Contains(fe.Detail, tc.detail) {
			t.Errorf("%.60q: %v; want position %d and %q", tc.filter, fe, tc.pos, tc.detail)
		}
	}
	// The limits themselves are accepted.
	for _, ok := range []string{nest(32), strings.Repeat("not ", 32) + `name = "a"`, cmps(100),
		`name = "` + strings.Repeat("a", 4086) + `"`} {
		if _, _, err := campaigns.CompileSegment(ok, "c", nil); err != nil {
			t.Errorf("%.60q: %v", ok, err)
		}
	}
}

var placeholderRE = regexp.MustCompile(`\$(\d+)`)

// TestCompileSegmentParameterised checks that no value of a filter reaches the SQL text and that
// placeholders continue the numbering of the args given.
func TestCompileSegmentParameterised(t *testing.T) {
	t.Parallel()
	filter := `name = "Zq1'x" or email in ("zq2@example.com", "zq3") or attributes.zq4 contains "zq5%"
		or attributes.k = 987654321 or attributes.k2 != "zq6" or created_at < "2001-02-03"
		or attributes.k3 not in ("zq7", 123456789) or external_id ends_with "zq8\\"`
	sql, args, err := campaigns.CompileSegment(filter, "x", []any{int64(1), "two"})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"Zq1", "zq2", "zq3", "zq4", "zq5", "987654321", "zq6", "2001", "zq7", "123456789", "zq8"} {
		if strings.Contains(sql, v) {
			t.Errorf("value %q is in the SQL text: %s", v, sql)
		}
	}
	maxN := 0
	for _, m := range placeholderRE.FindAllStringSubmatch(sql, -1) {
		n, _ := strconv.Atoi(m[1])
		if n < 3 {
			t.Errorf("placeholder $%d reuses a caller's argument", n)
		}
		maxN = max(maxN, n)
	}
	if maxN != len(args) || args[0] != int64(1) || args[1] != "two" {
		t.Fatalf("highest placeholder $%d, %d args: %v", maxN, len(args), args)
	}
	if _, _, err := campaigns.CompileSegment(`name = "a"`, "c; DROP TABLE contacts", nil); err == nil {
		t.Fatal("a bad alias was accepted")
	}
}

// filterSeeds are the fuzz seeds, also run against the database by TestFilterCorpusOnDatabase.
var filterSeeds = []string{
	`name = "a"`, `email ends_with "@example.com" and not locale in ("de", "fr")`,
	`attributes.plan = "pro" or attributes.seats >= 10`, `attributes.x exists`, `attributes.x = null`,
	`attributes.x != null`, `attributes.tags contains "vip"`, `attributes.tags contains 5`,
	`attributes.n not in (1, "1", true)`, `attributes.s < "m"`, `attributes.d > 1.5e3`,
	`created_at >= "2024-01-01" and updated_at < "2030-01-01T00:00:00+02:00"`,
	`NOT (attributes.a = true OR attributes.b = false)`, `attributes.q starts_with "%_\\"`,
	`name = "'; DROP TABLE contacts; --"`, `attributes.a'b = 1`, `attributes.x = -0.0`, `(((name = "x")))`,
	`attributes.x != -1e-300`, `attributes.x ends_with "\""`, `timezone != "" and external_id > "m"`,
}

func FuzzCompileSegment(f *testing.F) {
	for _, s := range filterSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, filter string) {
		sql, args, err := campaigns.CompileSegment(filter, "c", []any{int64(1)})
		if err != nil {
			var fe *campaigns.FilterError
			if !errors.As(err, &fe) || fe.Position < 1 || fe.Position > len(filter)+1 || fe.Detail == "" {
				t.Fatalf("%q: error %#v", filter, err)
			}
			return
		}
		maxN := 0
		for _, m := range placeholderRE.FindAllStringSubmatch(sql, -1) {
			n, _ := strconv.Atoi(m[1])
			maxN = max(maxN, n)
		}
		if maxN != len(args) {
			t.Fatalf("%q: highest placeholder $%d, %d args", filter, maxN, len(args))
		}
		// The only quoted text in the SQL is the compiler's own JSON type names.
		for _, q := range regexp.MustCompile(`'[^']*'`).FindAllString(sql, -1) {
			if !slices.Contains([]string{"'null'", "'string'", "'number'", "'boolean'", "'array'"}, q) {
				t.Fatalf("%q: quoted %s in SQL %s", filter, q, sql)
			}
		}
	})
}

// randomFilter builds a filter from the grammar, valid or (sometimes) not, with awkward values.
func randomFilter(r *rand.Rand, depth int) string {
	fields := []string{"email", "name", "locale", "timezone", "external_id", "created_at", "updated_at",
		"attributes.n", "attributes.s", "attributes.b", "attributes.arr", "attributes.obj", "attributes.nul", "attributes.missing"}
	values := []string{`"a"`, `"%"`, `"_"`, `"\\"`, `"\""`, `"10"`, `"2024-01-01"`, `"2024-01-01T10:00:00Z"`, `""`,
		`0`, `-1`, `1.5`, `1e300`, `-1e-300`, `10`, `true`, `false`, `null`, `"é"`, `"'; DROP TABLE contacts; --"`}
	ops := []string{"=", "!=", "<", "<=", ">", ">=", "contains", "starts_with", "ends_with"}
	if depth > 3 || r.IntN(3) == 0 {
		f := fields[r.IntN(len(fields))]
		switch r.IntN(6) {
		case 0:
			return f + " exists"
		case 1:
			kw := " in "
			if r.IntN(2) == 0 {
				kw = " not in "
			}
			n := 1 + r.IntN(3)
			vs := make([]string, n)
			for i := range vs {
				vs[i] = values[r.IntN(len(values))]
			}
			return f + kw + "(" + strings.Join(vs, ", ") + ")"
		}
		return f + " " + ops[r.IntN(len(ops))] + " " + values[r.IntN(len(values))]
	}
	switch r.IntN(4) {
	case 0:
		return "not " + randomFilter(r, depth+1)
	case 1:
		return "(" + randomFilter(r, depth+1) + ")"
	case 2:
		return randomFilter(r, depth+1) + " or " + randomFilter(r, depth+1)
	}
	return randomFilter(r, depth+1) + " and " + randomFilter(r, depth+1)
}

// TestFilterCorpusOnDatabase runs every accepted filter of the fuzz seeds, of the fuzz corpus on
// disk (testdata/fuzz/FuzzCompileSegment, when fuzzing left any) and of 1,500 filters generated
// from the grammar, over contacts whose attributes hold every JSON type under the same keys: no
// filter may fail in PostgreSQL (cast errors, bad LIKE patterns, bad jsonb).
func TestFilterCorpusOnDatabase(t *testing.T) {
	t.Parallel()
	b := audSetup(t)
	for i, attrs := range []map[string]any{
		{"n": 10, "s": "text", "b": true, "arr": []any{"a", 1}, "obj": map[string]any{"k": 1}, "nul": nil},
		{"n": "10", "s": 5, "b": "true", "arr": "a", "obj": []any{}, "nul": 0},
		{"n": []any{10}, "s": map[string]any{}, "b": nil, "arr": nil, "obj": "x", "nul": "null"},
		{"n": 1e300, "s": "%_\\", "b": false, "arr": []any{}, "obj": nil, "nul": false},
		{},
	} {
		b.contact(t, b.wsA, fmt.Sprintf("c%d", i), fmt.Sprintf("c%d@example.com", i), attrs)
	}
	filters := slices.Clone(filterSeeds)
	files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzCompileSegment", "*"))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if s, ok := strings.CutPrefix(line, "string("); ok {
				if v, err := strconv.Unquote(strings.TrimSuffix(s, ")")); err == nil {
					filters = append(filters, v)
				}
			}
		}
	}
	r := rand.New(rand.NewPCG(5, 5))
	for range 1500 {
		filters = append(filters, randomFilter(r, 0))
	}
	accepted := 0
	for _, f := range filters {
		cond, args, err := campaigns.CompileSegment(f, "c", []any{b.wsA})
		if err != nil {
			continue
		}
		accepted++
		var n int
		if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM contacts c WHERE c.workspace_id = $1 AND `+cond, args...).Scan(&n); err != nil {
			t.Fatalf("filter %q failed in PostgreSQL: %v\nSQL: %s", f, err, cond)
		}
	}
	if accepted < 500 {
		t.Fatalf("only %d of %d filters were accepted: the generator is off", accepted, len(filters))
	}
	t.Logf("%d of %d filters accepted and run", accepted, len(filters))
	if n := b.count(t, `SELECT count(*) FROM contacts`); n != 5 {
		t.Fatalf("%d contacts left", n)
	}
}
