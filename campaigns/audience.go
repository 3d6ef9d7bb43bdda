package campaigns

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"herald/internal/db"
	"herald/internal/httpx"
)

// Audience is who a campaign goes to: the contacts in any of the included lists and segments and
// in none of the excluded ones, one per address.
type Audience struct {
	Lists           []string `json:"lists,omitempty"`
	Segments        []string `json:"segments,omitempty"`
	ExcludeLists    []string `json:"exclude_lists,omitempty"`
	ExcludeSegments []string `json:"exclude_segments,omitempty"`
}

// Member is one recipient of an audience.
type Member struct {
	ContactID  int64
	ExternalID string
	Email      string
	Name       string
	Locale     string
	Timezone   string
	Attributes map[string]any
}

// NameRE is the form of list and segment names (the same rule as purposes).
var NameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// maxAudienceNames bounds each of an audience's four name lists.
const maxAudienceNames = 50

// Validate checks that the audience includes at least one list or segment and that every name
// is one of the workspace's lists or segments (whose filters still compile). Faults are 422
// *httpx.Problem values naming the field.
func (a Audience) Validate(ctx context.Context, q db.Querier, workspaceID int64) error {
	_, err := resolveAudience(ctx, q, workspaceID, a)
	return err
}

// resolvedAudience is an audience with its lists as ids and its segments parsed.
type resolvedAudience struct {
	lists, exLists []int64
	segs, exSegs   []*filterAST
}

// checkNames refuses malformed or too many names; repeats are dropped.
func checkNames(field string, names []string) ([]string, error) {
	if len(names) > maxAudienceNames {
		return nil, httpx.Invalid(field, fmt.Sprintf("at most %d names", maxAudienceNames))
	}
	out := make([]string, 0, len(names))
	for i, n := range names {
		if !NameRE.MatchString(n) {
			return nil, httpx.Invalid(field, fmt.Sprintf("entry %d is not a valid name", i+1))
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// resolveAudience looks the audience's names up in the workspace.
func resolveAudience(ctx context.Context, q db.Querier, workspaceID int64, a Audience) (resolvedAudience, error) {
	var r resolvedAudience
	fields := []struct {
		field   string
		names   []string
		segment bool
		ids     *[]int64
		filters *[]*filterAST
	}{
		{"lists", a.Lists, false, &r.lists, nil},
		{"segments", a.Segments, true, nil, &r.segs},
		{"exclude_lists", a.ExcludeLists, false, &r.exLists, nil},
		{"exclude_segments", a.ExcludeSegments, true, nil, &r.exSegs},
	}
	for _, f := range fields {
		names, err := checkNames(f.field, f.names)
		if err != nil {
			return r, err
		}
		if len(names) == 0 {
			continue
		}
		query := `SELECT name, id, '' FROM lists WHERE workspace_id = $1 AND name = ANY($2)`
		if f.segment {
			query = `SELECT name, id, filter FROM segments WHERE workspace_id = $1 AND name = ANY($2)`
		}
		rows, err := q.Query(ctx, query, workspaceID, names)
		if err != nil {
			return r, fmt.Errorf("resolve audience: %w", err)
		}
		found := map[string]bool{}
		var name, filter string
		var id int64
		_, err = pgx.ForEachRow(rows, []any{&name, &id, &filter}, func() error {
			found[name] = true
			if !f.segment {
				*f.ids = append(*f.ids, id)
				return nil
			}
			ast, err := parseFilter(filter)
			if err != nil {
				return httpx.Invalid(f.field, fmt.Sprintf("segment %s no longer compiles: %v", name, err))
			}
			*f.filters = append(*f.filters, ast)
			return nil
		})
		if err != nil {
			return r, fmt.Errorf("resolve audience: %w", err)
		}
		for _, n := range names {
			if !found[n] {
				kind := "list"
				if f.segment {
					kind = "segment"
				}
				return r, httpx.Invalid(f.field, fmt.Sprintf("no %s named %s", kind, n))
			}
		}
	}
	if len(r.lists) == 0 && len(r.segs) == 0 {
		return r, httpx.Invalid("lists", "an audience includes at least one list or segment")
	}
	return r, nil
}

// audienceSQL builds the pieces of an audience query; $1 is the workspace id.
type audienceSQL struct {
	r    resolvedAudience
	args []any
}

func newAudienceSQL(r resolvedAudience, workspaceID int64) *audienceSQL {
	return &audienceSQL{r: r, args: []any{workspaceID}}
}

func (s *audienceSQL) arg(v any) string {
	s.args = append(s.args, v)
	return "$" + strconv.Itoa(len(s.args))
}

// anyOf is the SQL test that the contacts row alias is in one of lists or matches one of segs;
// "false" when there are none.
func (s *audienceSQL) anyOf(alias string, lists []int64, segs []*filterAST) (string, error) {
	var parts []string
	if len(lists) > 0 {
		parts = append(parts, fmt.Sprintf(
			"EXISTS (SELECT 1 FROM list_members lm WHERE lm.contact_id = %s.id AND lm.list_id = ANY(%s::bigint[]))",
			alias, s.arg(lists)))
	}
	for _, f := range segs {
		var (
			cond string
			err  error
		)
		if cond, s.args, err = f.sql(alias, s.args); err != nil {
			return "", err
		}
		parts = append(parts, cond)
	}
	if len(parts) == 0 {
		return "false", nil
	}
	return "(" + strings.Join(parts, " OR ") + ")", nil
}

// candidates is a query of the ids of contacts in an included list or segment with id > after,
// with repeats: one branch per list (each an ordered scan of the list's primary key) and one for
// the segments (an ordered scan of the workspace's contacts), which PostgreSQL merges in id order.
func (s *audienceSQL) candidates(after string) (string, error) {
	var branches []string
	for _, id := range s.r.lists {
		branches = append(branches, fmt.Sprintf(
			"SELECT m.contact_id AS id FROM list_members m WHERE m.list_id = %s AND m.contact_id > %s",
			s.arg(id), after))
	}
	if len(s.r.segs) > 0 {
		cond, err := s.anyOf("s", nil, s.r.segs)
		if err != nil {
			return "", err
		}
		branches = append(branches, fmt.Sprintf(
			"SELECT s.id FROM contacts s WHERE s.workspace_id = $1 AND s.id > %s AND %s", after, cond))
	}
	return strings.Join(branches, " UNION ALL "), nil
}

// memberFilter is the test a candidate row c passes to be a member: a non-empty email, in no
// exclusion, and no other audience contact with the same address and a lower id.
func (s *audienceSQL) memberFilter() (string, error) {
	excC, err := s.anyOf("c", s.r.exLists, s.r.exSegs)
	if err != nil {
		return "", err
	}
	incD, err := s.anyOf("d", s.r.lists, s.r.segs)
	if err != nil {
		return "", err
	}
	excD, err := s.anyOf("d", s.r.exLists, s.r.exSegs)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf(`c.workspace_id = $1 AND c.email <> '' AND NOT %s
		AND NOT EXISTS (SELECT 1 FROM contacts d
			WHERE d.workspace_id = $1 AND lower(d.email) = lower(c.email) AND d.id < c.id
				AND %s AND NOT %s)`, excC, incD, excD), nil
}

// AudiencePage returns up to limit members of the audience with contact id > after, in contact id
// order: contacts of the workspace with an email, in an included list or segment and in no
// excluded one, and for each address (compared case-insensitively) only the audience contact
// with the lowest id. Segments are evaluated now. Walking the pages with after = the last
// ContactID visits every member once; the pages are stable while the data does not change.
func AudiencePage(ctx context.Context, q db.Querier, workspaceID int64, a Audience, after int64, limit int) ([]Member, error) {
	if limit <= 0 {
		return nil, nil
	}
	r, err := resolveAudience(ctx, q, workspaceID, a)
	if err != nil {
		return nil, fmt.Errorf("audience page: %w", err)
	}
	s := newAudienceSQL(r, workspaceID)
	afterArg := s.arg(after) + "::bigint"
	cand, err := s.candidates(afterArg)
	if err != nil {
		return nil, fmt.Errorf("audience page: %w", err)
	}
	filter, err := s.memberFilter()
	if err != nil {
		return nil, fmt.Errorf("audience page: %w", err)
	}
	query := fmt.Sprintf(`SELECT c.id, c.external_id, c.email, c.name, c.locale, c.timezone, c.attributes
		FROM (SELECT DISTINCT u.id FROM (%s) u) k
		JOIN contacts c ON c.id = k.id
		WHERE %s
		ORDER BY c.id
		LIMIT %s`, cand, filter, s.arg(limit))
	rows, err := q.Query(ctx, query, s.args...)
	if err != nil {
		return nil, fmt.Errorf("audience page: %w", err)
	}
	members := make([]Member, 0, min(limit, 10_000))
	var m Member
	var attrs []byte
	_, err = pgx.ForEachRow(rows, []any{&m.ContactID, &m.ExternalID, &m.Email, &m.Name, &m.Locale, &m.Timezone, &attrs}, func() error {
		dec := json.NewDecoder(bytes.NewReader(attrs))
		dec.UseNumber()
		m.Attributes = nil
		if err := dec.Decode(&m.Attributes); err != nil {
			return fmt.Errorf("decode attributes of contact %d: %w", m.ContactID, err)
		}
		if m.Attributes == nil {
			m.Attributes = map[string]any{}
		}
		members = append(members, m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audience page: %w", err)
	}
	return members, nil
}

// AudienceCount returns the number of members of the audience: the distinct addresses of its
// contacts.
func AudienceCount(ctx context.Context, q db.Querier, workspaceID int64, a Audience) (int64, error) {
	r, err := resolveAudience(ctx, q, workspaceID, a)
	if err != nil {
		return 0, fmt.Errorf("audience count: %w", err)
	}
	s := newAudienceSQL(r, workspaceID)
	inc, err := s.anyOf("c", r.lists, r.segs)
	if err != nil {
		return 0, fmt.Errorf("audience count: %w", err)
	}
	exc, err := s.anyOf("c", r.exLists, r.exSegs)
	if err != nil {
		return 0, fmt.Errorf("audience count: %w", err)
	}
	var n int64
	err = q.QueryRow(ctx, fmt.Sprintf(`SELECT count(DISTINCT lower(c.email)) FROM contacts c
		WHERE c.workspace_id = $1 AND c.email <> '' AND %s AND NOT %s`, inc, exc), s.args...).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("audience count: %w", err)
	}
	return n, nil
}
