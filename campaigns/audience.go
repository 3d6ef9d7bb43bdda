package campaigns

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

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

// audienceNameRE is the form of list and segment names (the same rule as purposes).
var audienceNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

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

// audienceCheckNames refuses malformed or too many names; repeats are dropped.
func audienceCheckNames(field string, names []string) ([]string, error) {
	if len(names) > maxAudienceNames {
		return nil, httpx.Invalid(field, fmt.Sprintf("at most %d names", maxAudienceNames))
	}
	out := make([]string, 0, len(names))
	for i, n := range names {
		if !audienceNameRE.MatchString(n) {
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
		names, err := audienceCheckNames(f.field, f.names)
		if err != nil {
			return r, err
		}
		if len(names) == 0 {
			continue
		}
		// FOR KEY SHARE: a campaign scheduled in this transaction keeps its lists and segments
		// from being deleted under it (see audienceDelete).
		query := `SELECT name, id, '' FROM lists WHERE workspace_id = $1 AND name = ANY($2) FOR KEY SHARE`
		if f.segment {
			query = `SELECT name, id, filter FROM segments WHERE workspace_id = $1 AND name = ANY($2) FOR KEY SHARE`
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

// candidates is a query of the first limit distinct ids of contacts in an included list or
// segment with id > after, in id order: each list contributes its first limit members (an ordered
// scan of its primary key) and the segments their first limit contacts (an ordered scan of the
// workspace's contacts, filtered), so the query reads at most limit rows per source however big
// the lists and the workspace are. Every candidate up to the last one returned is in the window.
func (s *audienceSQL) candidates(after, limit string) (string, error) {
	var branches []string
	for _, id := range s.r.lists {
		branches = append(branches, fmt.Sprintf(
			"(SELECT m.contact_id AS id FROM list_members m WHERE m.list_id = %s AND m.contact_id > %s ORDER BY m.contact_id LIMIT %s)",
			s.arg(id), after, limit))
	}
	if len(s.r.segs) > 0 {
		cond, err := s.anyOf("s", nil, s.r.segs)
		if err != nil {
			return "", err
		}
		branches = append(branches, fmt.Sprintf(
			"(SELECT s.id FROM contacts s WHERE s.workspace_id = $1 AND s.id > %s AND %s ORDER BY s.id LIMIT %s)",
			after, cond, limit))
	}
	return fmt.Sprintf("SELECT DISTINCT u.id FROM (%s) u ORDER BY u.id LIMIT %s", strings.Join(branches, " UNION ALL "), limit), nil
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
// ContactID visits every member once; the pages are stable while the data does not change. A
// page shorter than limit is the last one.
//
// Each query takes a window of the next candidates (contacts in an included list or
// segment) and returns them, the members with their fields and the others as a bare id; windows
// are read until the page is full or the candidates run out. Planned as one query with DISTINCT
// over the whole audience, PostgreSQL hashes every candidate for every page.
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
	afterIdx := len(s.args) - 1
	// A window a little larger than the page usually fills it in one query despite exclusions
	// and repeated addresses.
	window := limit + limit/8 + 16
	limitArg := s.arg(window) + "::int"
	cand, err := s.candidates(afterArg, limitArg)
	if err != nil {
		return nil, fmt.Errorf("audience page: %w", err)
	}
	filter, err := s.memberFilter()
	if err != nil {
		return nil, fmt.Errorf("audience page: %w", err)
	}
	query := fmt.Sprintf(`SELECT k.id, c.id IS NOT NULL, c.external_id, c.email, c.name, c.locale, c.timezone, c.attributes
		FROM (%s) k
		LEFT JOIN LATERAL (SELECT * FROM contacts c WHERE c.id = k.id AND %s) c ON true
		ORDER BY k.id`, cand, filter)

	members := make([]Member, 0, min(limit, 10_000))
	for {
		rows, err := q.Query(ctx, query, s.args...)
		if err != nil {
			return nil, fmt.Errorf("audience page: %w", err)
		}
		var (
			externalID, email, name, locale, timezone pgtype.Text
			cid                                       int64
			member                                    bool
			attrs                                     []byte
			seen                                      int
		)
		_, err = pgx.ForEachRow(rows, []any{&cid, &member, &externalID, &email, &name, &locale, &timezone, &attrs}, func() error {
			seen++
			if !member || len(members) == limit {
				return nil
			}
			m := Member{ContactID: cid, ExternalID: externalID.String, Email: email.String, Name: name.String,
				Locale: locale.String, Timezone: timezone.String}
			dec := json.NewDecoder(bytes.NewReader(attrs))
			dec.UseNumber()
			if err := dec.Decode(&m.Attributes); err != nil {
				return fmt.Errorf("decode attributes of contact %d: %w", cid, err)
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
		if len(members) == limit || seen < window {
			return members, nil
		}
		s.args[afterIdx] = cid // the next window starts after this one's last candidate
	}
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

// ErrAudienceInUse is returned when deleting a list or segment that a scheduled, sending or
// paused campaign names: its fan-out would fail half-way.
var ErrAudienceInUse = errors.New("a scheduled, sending or paused campaign uses it")

// audienceDelete deletes the workspace's list or segment (table lists or segments) unless a live
// campaign names it under key or exclKey of its audience. The row is locked first, so a campaign
// being scheduled with it (which reads it FOR KEY SHARE) either commits before the check, which
// then sees it, or waits for the delete and then finds the name gone.
func audienceDelete(ctx context.Context, q db.Querier, table, exclKey string, workspaceID int64, name string) error {
	b, ok := q.(interface {
		Begin(context.Context) (pgx.Tx, error)
	})
	if !ok {
		return fmt.Errorf("delete %s: needs a pool or transaction", table)
	}
	return pgx.BeginFunc(ctx, b, func(tx pgx.Tx) error {
		var id int64
		err := tx.QueryRow(ctx, `SELECT id FROM `+table+` WHERE workspace_id = $1 AND name = $2 FOR UPDATE`, workspaceID, name).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("delete %s: %w", table, db.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("delete %s: %w", table, err)
		}
		var used bool
		err = tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM campaigns WHERE workspace_id = $1
			AND status IN ('scheduled', 'sending', 'paused') AND (audience->$2 ? $4 OR audience->$3 ? $4))`,
			workspaceID, table, exclKey, name).Scan(&used)
		if err != nil {
			return fmt.Errorf("delete %s: %w", table, err)
		}
		if used {
			return fmt.Errorf("delete %s: %w", table, ErrAudienceInUse)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE id = $1`, id); err != nil {
			return fmt.Errorf("delete %s: %w", table, err)
		}
		return nil
	})
}
