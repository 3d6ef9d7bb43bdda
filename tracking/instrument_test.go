package tracking

import (
	"context"
	"html"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"herald/internal/db"
	"herald/templates"
)

// countingQuerier counts the statements run through a real pool.
type countingQuerier struct {
	db.Querier
	n atomic.Int64
}

func (c *countingQuerier) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	c.n.Add(1)
	return c.Querier.Query(ctx, sql, args...)
}

func (c *countingQuerier) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	c.n.Add(1)
	return c.Querier.QueryRow(ctx, sql, args...)
}

func (c *countingQuerier) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	c.n.Add(1)
	return c.Querier.Exec(ctx, sql, args...)
}

var clickURLRE = regexp.MustCompile(`https://herald\.example/t/c/([a-z2-7]+)`)

func TestInstrument(t *testing.T) {
	t.Parallel()
	b := trkSetup(t, trkOpts{})
	q := &countingQuerier{Querier: b.pool}
	b.links = NewLinks(q, 0, 0)
	b.tracker.Links = b.links
	campaign := b.campaign(t, b.wsA)
	rcpt, _ := b.recipient(t, b.wsA, campaign, true)

	tests := []struct {
		name string
		in   string
		// tracked are the stored URLs of the rewritten links, in order.
		tracked []string
		// pixelAt is the text the pixel goes before ("" for the end).
		pixelAt string
	}{
		{name: "plain", in: `<p><a href="https://shop.example/a?x=1&amp;y=2">Shop</a></p>`,
			tracked: []string{"https://shop.example/a?x=1&y=2"}},
		{name: "body", in: `<html><body><a href='http://Shop.example/b'>b</a><p>x</p></body></html>`,
			tracked: []string{"http://Shop.example/b"}, pixelAt: "</body></html>"},
		{name: "upper case tag and attribute, unquoted value, spaces", in: `<A class=x HREF = https://shop.example/c >c</A><BODY></BODY >`,
			tracked: []string{"https://shop.example/c"}, pixelAt: "</BODY >"},
		{name: "area and other attributes before href", in: `<map><area shape="rect" coords="0,0,1,1" title='a "q"' href="https://shop.example/d"></map>`,
			tracked: []string{"https://shop.example/d"}},
		{name: "duplicate href: the first counts", in: `<a href="https://shop.example/e" href="https://evil.example/">e</a>`,
			tracked: []string{"https://shop.example/e"}},
		{name: "surrounding spaces trimmed", in: `<a href="  https://shop.example/f  ">f</a>`,
			tracked: []string{"https://shop.example/f"}},
		{name: "herald's own links", in: `<a href="` + templates.PlaceholderUnsubscribe + `">u</a><a href="` + templates.PlaceholderPreferences +
			`">p</a><a href="` + templates.PlaceholderViewOnline + `">v</a><a href="https://herald.example/u/abc">own</a>` +
			`<a href="HTTPS://HERALD.EXAMPLE/t/c/x">own2</a><a href="https://herald.example.evil/x">not own</a>`,
			tracked: []string{"https://herald.example.evil/x"}},
		{name: "not absolute http(s)", in: `<a href="mailto:a@example.com">m</a><a href="tel:+123">t</a><a href="#top">#</a>` +
			`<a href="/relative">r</a><a href="//shop.example/x">pr</a><a href="javascript:alert(1)">j</a><a href="ftp://x.example/">f</a>` +
			`<a href="https://shop.example/a&#10;b">ctl</a><a href="">e</a><a>none</a><a data-href="https://shop.example/z">d</a>`},
		{name: "not a link element", in: `<abbr href="https://shop.example/x">x</abbr><link href="https://shop.example/css">`},
		{name: "comment, script and style", in: `<!-- <a href="https://shop.example/c1">c</a> --><script>var s='<a href="https://shop.example/s">';</script>` +
			`<style>a[href="https://shop.example/st"]{}</style><a href="https://shop.example/real">r</a>`,
			tracked: []string{"https://shop.example/real"}},
		{name: "repeated URL", in: `<a href="https://shop.example/r">1</a><a href="https://shop.example/r">2</a>`,
			tracked: []string{"https://shop.example/r", "https://shop.example/r"}},
		{name: "script in a URL's query stays escaped", in: `<a href="https://shop.example/?q=&lt;script&gt;&quot;x">q</a>`,
			tracked: []string{`https://shop.example/?q=<script>"x`}},
		{name: "cut short at the end", in: `<p>x</p><a href="https://shop.example/cut`},
		{name: "empty", in: ``},
	}
	pixel := pixelTag(OpenURL(trkBase, OpenToken(b.svc.Keys, OpenRef{WorkspaceID: b.wsA, CampaignID: campaign, RecipientID: rcpt})))
	for _, tc := range tests {
		out, err := b.tracker.Instrument(b.ctx, b.wsA, campaign, rcpt, tc.in)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if strings.Count(out, pixel) != 1 {
			t.Errorf("%s: %d pixels in %s", tc.name, strings.Count(out, pixel), out)
		}
		// Put the original values back and drop the pixel: the input must come back byte for byte.
		tokens := clickURLRE.FindAllStringSubmatch(out, -1)
		if len(tokens) != len(tc.tracked) {
			t.Fatalf("%s: %d links rewritten, want %d:\n%s", tc.name, len(tokens), len(tc.tracked), out)
		}
		var got []string
		for _, m := range tokens {
			ref, err := ParseClickToken(b.svc.Keys, m[1])
			if err != nil || ref.WorkspaceID != b.wsA || ref.CampaignID != campaign || ref.RecipientID != rcpt {
				t.Fatalf("%s: click token %s: %+v %v", tc.name, m[1], ref, err)
			}
			l, err := b.links.Get(b.ctx, ref.LinkID)
			if err != nil || l.CampaignID != campaign {
				t.Fatalf("%s: link %d: %+v %v", tc.name, ref.LinkID, l, err)
			}
			got = append(got, l.URL)
		}
		if strings.Join(got, "\n") != strings.Join(tc.tracked, "\n") {
			t.Errorf("%s: stored %q, want %q", tc.name, got, tc.tracked)
		}
		if tc.pixelAt != "" && !strings.Contains(out, pixel+tc.pixelAt) {
			t.Errorf("%s: pixel not before %q:\n%s", tc.name, tc.pixelAt, out)
		}
		if tc.pixelAt == "" && !strings.HasSuffix(out, pixel) {
			t.Errorf("%s: pixel not at the end:\n%s", tc.name, out)
		}
		if strings.Contains(out, "<script>") && !strings.Contains(tc.in, "<script>") {
			t.Errorf("%s: a script tag appeared:\n%s", tc.name, out)
		}
		if back := undo(t, out, pixel, tc.in); back != tc.in {
			t.Errorf("%s: other bytes changed:\n in: %s\nout: %s", tc.name, tc.in, back)
		}
	}

	// A second message of the campaign with the same links: no round trip at all.
	before := q.n.Load()
	rcpt2, _ := b.recipient(t, b.wsA, campaign, true)
	if _, err := b.tracker.Instrument(b.ctx, b.wsA, campaign, rcpt2, tests[0].in+tests[1].in); err != nil {
		t.Fatal(err)
	}
	if n := q.n.Load() - before; n != 0 {
		t.Errorf("a message whose links are cached ran %d statements", n)
	}
	// New links of one message: one round trip for all of them; another campaign's link of the
	// same URL is a row of its own.
	other := b.campaign(t, b.wsA)
	before = q.n.Load()
	out, err := b.tracker.Instrument(b.ctx, b.wsA, other, rcpt2, tests[0].in+tests[1].in+tests[2].in)
	if err != nil {
		t.Fatal(err)
	}
	if n := q.n.Load() - before; n != 1 {
		t.Errorf("a message with 3 new links ran %d statements, want 1", n)
	}
	ref, _ := ParseClickToken(b.svc.Keys, clickURLRE.FindStringSubmatch(out)[1])
	if l, _ := b.links.Get(b.ctx, ref.LinkID); l.CampaignID != other || l.WorkspaceID != b.wsA {
		t.Errorf("link of the other campaign: %+v", l)
	}
}

// undo turns instrumented HTML back into its input: each click URL back into the value it
// replaced (found in the input at the same place), and the pixel removed.
func undo(t *testing.T, out, pixel, in string) string {
	t.Helper()
	out = strings.Replace(out, pixel, "", 1)
	edits, _ := scan(in, (&Tracker{BaseURL: trkBase}).isOwn)
	var b strings.Builder
	pos := 0
	for _, e := range edits {
		i := strings.Index(out[pos:], `"`+trkBase+"/t/c/")
		if i < 0 {
			t.Fatalf("edit without a click URL in %s", out)
		}
		j := strings.IndexByte(out[pos+i+1:], '"')
		b.WriteString(out[pos : pos+i])
		b.WriteString(in[e.start:e.end])
		pos = pos + i + 1 + j + 1
	}
	b.WriteString(out[pos:])
	return b.String()
}

func TestHrefSpanMatchesTokenizer(t *testing.T) {
	t.Parallel()
	// Tags where hrefSpan must find exactly the value the tokenizer reads, or nothing.
	for _, tag := range []string{
		`<a href="x">`, `<a href='x'>`, `<a href=x>`, `<a HREF=x />`, `<a / href="x">`, `<a =href="y" href="x">`,
		`<a title="href=y" href="x">`, `<a title='a>b' href="x">`, `<a href = "x" >`, `<a hreff="y" href="x">`,
		`<a	href="x"	>`, `<a/href="x">`, `<a href="x"href="y">`, `<a x=href=y href="x">`,
	} {
		sp, ok := hrefSpan([]byte(tag))
		if !ok {
			t.Errorf("%s: no href found", tag)
			continue
		}
		if got := html.UnescapeString(tag[sp.start:sp.end]); strings.Trim(got, `"'`) != "x" || sp.unescaped() != "x" {
			t.Errorf("%s: span %q (%q)", tag, tag[sp.start:sp.end], sp.raw)
		}
	}
}
