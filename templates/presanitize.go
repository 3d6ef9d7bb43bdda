package templates

import (
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	texttemplate "text/template"
	"text/template/parse"

	"github.com/k3a/html2text"
	"golang.org/x/net/html"
)

// presanitized is an HTML part whose static text was sanitised once, at Compile, so that a
// render does not call Sanitize (see "Sanitising" in the package doc for why this is sound).
type presanitized struct {
	html  *htmltemplate.Template
	text  *texttemplate.Template // nil: the text part is html2text of each rendered HTML
	attrs []*attrCheck           // per action in an attribute value, indexed by the action's argument
	links []urlText              // per href action of the text template
	// finishers are the herald_ functions of both fast templates, for foldLinks at Compile.
	finishers map[string]any
}

// addFuncs records the herald_ functions of fm in p.finishers.
func (p *presanitized) addFuncs(fm map[string]any) {
	if p.finishers == nil {
		p.finishers = map[string]any{}
	}
	for name, f := range fm {
		if strings.HasPrefix(name, "herald_") {
			p.finishers[name] = f
		}
	}
}

// errDeopt stops a fast render whose data the sanitiser would change; Render then takes the
// per-render path for that message.
var errDeopt = errors.New("a value needs the per-render sanitiser")

// Tokens stand for actions while the static text is sanitised: lower-case letters only, so that
// bluemonday keeps them in text and in any attribute value that takes a word (href, src, title,
// alt, class), and a relative URL that net/url round-trips.
const tokenPrefix = "hrldq"

func token(n int) string {
	var b strings.Builder
	b.WriteString(tokenPrefix)
	for _, c := range strconv.FormatInt(int64(n), 16) { // digits 0-f as letters a-p, then q
		if c <= '9' {
			b.WriteByte(byte('a' + c - '0'))
		} else {
			b.WriteByte(byte('k' + c - 'a'))
		}
	}
	b.WriteByte('q')
	return b.String()
}

type actionKind int

const (
	leafAction    actionKind = iota // prints (or declares) a value
	controlAction                   // if, else, end, range, with, break, continue
)

type action struct {
	src     string // the action as written, trim markers removed (their whitespace already is)
	inner   string // src without its delimiters
	kind    actionKind
	decl    bool     // declares a variable and prints nothing
	esc     []string // the escapers html/template gave it in the fast template
	origEsc []string // and in the template as written
	// Where the token landed in the sanitised text.
	inAttr   bool
	elem     string
	attr     string
	pre, suf string // the sanitised start tag around the token
}

// segment is static text or one action, in source order.
type segment struct {
	text string
	act  *action
}

// presanitize builds the fast form of an HTML part that Compile accepted, or returns nil when
// the template needs the per-render sanitiser (the reason is not reported: both paths give the
// same result).
//
// escaped is the tree of the HTML part as html/template escaped it: its text nodes are the
// static text as the per-render path hands it to the sanitiser (html/template rewrites some,
// such as "<" that starts no tag, which becomes "&lt;"), so they are what is sanitised here.
func presanitize(src string, escaped *parse.Tree) *presanitized {
	if strings.Contains(strings.ToLower(src), tokenPrefix) {
		return nil
	}
	segs, ok := scanActions(src)
	if !ok || !sameTexts(segs, src) {
		return nil
	}
	rewritten := textNodes(escaped.Root, nil)
	k := 0
	for i := range segs {
		if segs[i].act != nil || segs[i].text == "" {
			continue
		}
		if k >= len(rewritten) {
			return nil
		}
		segs[i].text = rewritten[k]
		k++
	}
	if k != len(rewritten) {
		return nil
	}
	orig := actionNodes(escaped.Root, nil)
	k = 0
	for _, sg := range segs {
		if sg.act == nil || sg.act.kind != leafAction {
			continue
		}
		if k >= len(orig) {
			return nil
		}
		sg.act.origEsc = escapers(orig[k].Pipe)
		k++
	}
	if k != len(orig) {
		return nil
	}
	var t strings.Builder
	var acts []*action
	for _, s := range segs {
		if s.act == nil {
			t.WriteString(s.text)
			continue
		}
		t.WriteString(token(len(acts)))
		acts = append(acts, s.act)
	}
	tokenised := t.String()
	sanitised := Sanitize(tokenised)
	if Sanitize(sanitised) != sanitised || !tokensInOrder(sanitised, len(acts)) {
		return nil
	}
	before, ok := locate(tokenised, acts, nil)
	if !ok {
		return nil
	}
	after, ok := locate(sanitised, acts, acts)
	if !ok || !samePlaces(before, after) || !composes(tokenised, sanitised, acts) {
		return nil
	}
	p := &presanitized{}
	if p.html = p.buildHTML(sanitised, acts); p.html == nil {
		return nil
	}
	p.text = p.buildText(sanitised, acts)
	foldLinks(p.html.Tree.Root, p.finishers)
	if p.text != nil {
		foldLinks(p.text.Tree.Root, p.finishers)
	}
	return p
}

// foldLinks replaces, in a fast template, each action that prints a link function's
// placeholder through one of this file's finishing functions ({{unsubscribe_url | herald_attr_value
// "0"}}, {{postal_address | herald_text_of}}) by the text it prints: both functions depend only
// on their arguments, and the placeholder is a constant, so the output is the same at every
// render. That spares each render two calls through reflection per link. An action whose
// finishing function refuses the placeholder (errDeopt) is left as it is and stops every render
// as before.
func foldLinks(list *parse.ListNode, fm map[string]any) {
	if list == nil {
		return
	}
	links := linkFuncs()
	for i, n := range list.Nodes {
		switch n := n.(type) {
		case *parse.ActionNode:
			if out, ok := foldedLink(n, links, fm); ok {
				list.Nodes[i] = &parse.TextNode{NodeType: parse.NodeText, Pos: n.Pos, Text: []byte(out)}
			}
		case *parse.IfNode:
			foldLinks(n.List, fm)
			foldLinks(n.ElseList, fm)
		case *parse.RangeNode:
			foldLinks(n.List, fm)
			foldLinks(n.ElseList, fm)
		case *parse.WithNode:
			foldLinks(n.List, fm)
			foldLinks(n.ElseList, fm)
		}
	}
}

// foldedLink evaluates an action of the form {{link_func | herald_finisher "arg"...}}; ok is
// false for any other action, or when the finisher fails.
func foldedLink(n *parse.ActionNode, links, fm map[string]any) (string, bool) {
	p := n.Pipe
	if len(p.Decl) != 0 || len(p.Cmds) != 2 || len(p.Cmds[0].Args) != 1 {
		return "", false
	}
	id, ok := p.Cmds[0].Args[0].(*parse.IdentifierNode)
	if !ok {
		return "", false
	}
	link, ok := links[id.Ident].(func() string)
	if !ok {
		return "", false
	}
	fn, ok := p.Cmds[1].Args[0].(*parse.IdentifierNode)
	if !ok || !strings.HasPrefix(fn.Ident, "herald_") || fm[fn.Ident] == nil {
		return "", false
	}
	var args []reflect.Value
	for _, a := range p.Cmds[1].Args[1:] {
		sn, ok := a.(*parse.StringNode)
		if !ok {
			return "", false
		}
		args = append(args, reflect.ValueOf(sn.Text))
	}
	f := reflect.ValueOf(fm[fn.Ident])
	ft := f.Type()
	if ft.NumIn() != len(args)+1 || ft.IsVariadic() || ft.NumOut() < 1 || ft.Out(0).Kind() != reflect.String {
		return "", false
	}
	v := reflect.New(ft.In(len(args))).Elem()
	lv := reflect.ValueOf(link())
	if !lv.Type().AssignableTo(v.Type()) {
		return "", false
	}
	v.Set(lv)
	out := f.Call(append(args, v))
	if len(out) == 2 && !out[1].IsNil() {
		return "", false
	}
	return out[0].String(), true
}

// isSpace is text/template's notion of the space a trim marker removes.
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// scanActions splits src into static text and actions as text/template's lexer does, applying
// trim markers to the text and dropping comments. sameTexts checks the result against the
// parser's own text nodes, so a mistake here sends the template to the per-render path.
func scanActions(src string) ([]segment, bool) {
	var segs []segment
	trimNext := false
	for {
		j := strings.Index(src, "{{")
		if j < 0 {
			break
		}
		text := src[:j]
		if trimNext {
			text = strings.TrimLeft(text, " \t\r\n")
		}
		k := j + 2
		leftTrim := k+1 < len(src) && src[k] == '-' && isSpace(src[k+1])
		if leftTrim {
			text = strings.TrimRight(text, " \t\r\n")
			k += 2
		}
		segs = append(segs, segment{text: text})
		end, rightTrim, comment, ok := actionEnd(src, k)
		if !ok {
			return nil, false
		}
		if !comment {
			inner := src[k:end]
			segs = append(segs, segment{act: &action{src: "{{ " + inner + " }}", inner: inner, kind: kindOf(inner)}})
		}
		trimNext = rightTrim
		if rightTrim {
			end += 2
		}
		src = src[end+2:]
	}
	if trimNext {
		src = strings.TrimLeft(src, " \t\r\n")
	}
	return append(segs, segment{text: src}), true
}

// actionEnd finds the end of the action whose body starts at k: the index of its right
// delimiter (or of the space before " -}}"), skipping strings, raw strings and characters.
func actionEnd(src string, k int) (end int, rightTrim, comment, ok bool) {
	atDelim := func(i int) (bool, bool) {
		if i+3 < len(src) && isSpace(src[i]) && src[i+1] == '-' && strings.HasPrefix(src[i+2:], "}}") {
			return true, true
		}
		return strings.HasPrefix(src[i:], "}}"), false
	}
	if strings.HasPrefix(src[k:], "/*") {
		c := strings.Index(src[k+2:], "*/")
		if c < 0 {
			return 0, false, false, false
		}
		i := k + 2 + c + 2
		if d, trim := atDelim(i); d {
			return i, trim, true, true
		}
		return 0, false, false, false
	}
	for i := k; i < len(src); i++ {
		if d, trim := atDelim(i); d {
			return i, trim, false, true
		}
		switch q := src[i]; q {
		case '"', '\'', '`':
			for i++; i < len(src) && src[i] != q; i++ {
				if src[i] == '\\' && q != '`' {
					i++
				}
			}
		}
	}
	return 0, false, false, false
}

func kindOf(inner string) actionKind {
	word := strings.TrimSpace(inner)
	if i := strings.IndexAny(word, " \t\r\n("); i >= 0 {
		word = word[:i]
	}
	switch word {
	case "if", "else", "end", "range", "with", "break", "continue", "define", "block", "template":
		return controlAction
	}
	return leafAction
}

// sameTexts checks the scanned static texts against text/template's parse of src.
func sameTexts(segs []segment, src string) bool {
	t, err := texttemplate.New("html").Funcs(funcs()).Parse(src)
	if err != nil {
		return false
	}
	var want []string
	for _, s := range segs {
		if s.act == nil && s.text != "" {
			want = append(want, s.text)
		}
	}
	return equalStrings(textNodes(t.Tree.Root, nil), want)
}

func textNodes(n parse.Node, out []string) []string {
	switch n := n.(type) {
	case *parse.ListNode:
		if n != nil {
			for _, c := range n.Nodes {
				out = textNodes(c, out)
			}
		}
	case *parse.TextNode:
		out = append(out, string(n.Text))
	case *parse.IfNode:
		out = textNodes(n.List, out)
		out = textNodes(n.ElseList, out)
	case *parse.RangeNode:
		out = textNodes(n.List, out)
		out = textNodes(n.ElseList, out)
	case *parse.WithNode:
		out = textNodes(n.List, out)
		out = textNodes(n.ElseList, out)
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// tokensInOrder checks that s holds tokens 0..n-1, each once, in order, and no other text that
// starts like a token.
func tokensInOrder(s string, n int) bool {
	if strings.Count(s, tokenPrefix) != n {
		return false
	}
	pos := 0
	for i := range n {
		j := strings.Index(s[pos:], token(i))
		if j < 0 {
			return false
		}
		pos += j + len(token(i))
	}
	return true
}

// place is where a token sits in an HTML text: element text, or the value of attribute attr of a
// start tag elem. pre and suf are the raw tag around the token.
type place struct {
	inAttr     bool
	elem, attr string
	pre, suf   string
}

// locate finds the place of each token in s with the HTML tokenizer. Tokens in a comment, an
// attribute name or a tag outside any value, and two tokens in one attribute value, fail; so
// does a control action anywhere but in text. When record is set, the sanitised places are
// stored in it.
func locate(s string, acts []*action, record []*action) ([]place, bool) {
	places := make([]place, len(acts))
	found := make([]bool, len(acts))
	z := html.NewTokenizer(strings.NewReader(s))
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		raw := string(z.Raw())
		if !strings.Contains(raw, tokenPrefix) {
			continue
		}
		switch tt {
		case html.TextToken:
			for i := range acts {
				if strings.Contains(raw, token(i)) {
					places[i], found[i] = place{}, true
				}
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			inValues := 0
			for hasAttr {
				var key, val []byte
				key, val, hasAttr = z.TagAttr()
				if !strings.Contains(string(val), tokenPrefix) {
					continue
				}
				n := 0
				for i := range acts {
					tok := token(i)
					if !strings.Contains(string(val), tok) {
						continue
					}
					at := strings.Index(raw, tok)
					places[i] = place{inAttr: true, elem: string(name), attr: string(key),
						pre: raw[:at], suf: raw[at+len(tok):]}
					found[i] = true
					n++
				}
				if n != 1 {
					return nil, false
				}
				inValues++
			}
			if strings.Count(raw, tokenPrefix) != inValues {
				return nil, false // a token in a name, or outside any value
			}
		default:
			return nil, false // comment, doctype, end tag
		}
	}
	for i, a := range acts {
		if !found[i] || (a.kind == controlAction && places[i].inAttr) {
			return nil, false
		}
		if record != nil {
			p := places[i]
			record[i].inAttr, record[i].elem, record[i].attr, record[i].pre, record[i].suf = p.inAttr, p.elem, p.attr, p.pre, p.suf
		}
	}
	return places, true
}

// samePlaces: every token is, after sanitising, where it was before: in text, or in the value of
// the same attribute of the same element.
func samePlaces(before, after []place) bool {
	for i := range before {
		b, a := before[i], after[i]
		if b.inAttr != a.inAttr || b.elem != a.elem || b.attr != a.attr {
			return false
		}
	}
	return true
}

// composes checks that sanitising is compositional at every control action: each stretch of
// the tokenised source between control actions sanitises alone to its stretch of the whole
// result, and leaves the sanitiser in its initial state (not inside a tag, a comment, a raw
// text element or an element whose content is dropped, and no dropped start tag waiting for
// its end tag to be dropped too). Then any sequence of stretches that a run of {{if}}, {{range}}
// and {{with}} can produce sanitises to the same sequence of sanitised stretches.
func composes(tokenised, sanitised string, acts []*action) bool {
	var cuts []string
	for i, a := range acts {
		if a.kind == controlAction {
			cuts = append(cuts, token(i))
		}
	}
	if len(cuts) == 0 {
		return true
	}
	src, out := splitAt(tokenised, cuts), splitAt(sanitised, cuts)
	for i := range src {
		got := Sanitize(src[i])
		if got != out[i] || Sanitize(out[i]) != out[i] {
			return false
		}
		if i == len(src)-1 {
			break
		}
		probe := neutralProbe(src[i]) + neutralProbe(out[i])
		if Sanitize(src[i]+probe) != out[i]+Sanitize(probe) || Sanitize(out[i]+probe) != out[i]+Sanitize(probe) {
			return false
		}
	}
	return true
}

func splitAt(s string, cuts []string) []string {
	var parts []string
	for _, c := range cuts {
		i := strings.Index(s, c)
		parts = append(parts, s[:i])
		s = s[i+len(c):]
	}
	return append(parts, s)
}

// neutralProbe is markup that the sanitiser keeps as written only from its initial state: an
// allowed element with text, and the end tag of every element started in s (which the sanitiser
// would drop if it had dropped that element's start tag).
func neutralProbe(s string) string {
	var b strings.Builder
	b.WriteString("<b>" + tokenPrefix + "probe</b>")
	seen := map[string]bool{}
	z := html.NewTokenizer(strings.NewReader(s))
	for tt := z.Next(); tt != html.ErrorToken; tt = z.Next() {
		if tt == html.StartTagToken {
			name, _ := z.TagName()
			if n := string(name); !seen[n] {
				seen[n] = true
				b.WriteString("</" + n + ">")
			}
		}
	}
	return b.String()
}

// buildHTML puts the actions back into the sanitised text and parses that as the fast
// template. After html/template has escaped it, each printing action gets a last command that
// brings its output to the form the sanitiser writes, or stops the render (errDeopt) when the
// sanitiser would change it: see textValue and attrCheck.
func (p *presanitized) buildHTML(sanitised string, acts []*action) *htmltemplate.Template {
	var b strings.Builder
	var want []string
	type span struct{ start, end int }
	spans := make([]span, len(acts))
	rest := sanitised
	for i, a := range acts {
		j := strings.Index(rest, token(i))
		if rest[:j] != "" {
			want = append(want, rest[:j])
		}
		b.WriteString(rest[:j])
		spans[i] = span{b.Len(), b.Len() + len(a.src)}
		b.WriteString(a.src)
		rest = rest[j+len(token(i)):]
	}
	if rest != "" {
		want = append(want, rest)
	}
	b.WriteString(rest)
	fm := htmltemplate.FuncMap(funcs())
	fm["herald_text"] = textValue
	fm["herald_text_value"] = escapedTextValue
	fm["herald_attr"] = p.checkAttr
	fm["herald_attr_value"] = p.checkAttrValue
	p.addFuncs(fm)
	t, err := htmltemplate.New("html").Option("missingkey=error").Funcs(fm).Parse(b.String())
	if err != nil || !equalStrings(textNodes(t.Tree.Root, nil), want) {
		return nil
	}
	var escErr *htmltemplate.Error
	if err := t.Execute(io.Discard, nil); errors.As(err, &escErr) {
		return nil
	}
	// html/template rewrites text nodes it finds unsafe; the sanitised text must need none.
	if !equalStrings(textNodes(t.Tree.Root, nil), want) {
		return nil
	}
	nodes := actionNodes(t.Tree.Root, nil)
	seen := make([]bool, len(acts))
	for _, n := range nodes {
		i := -1
		for k, s := range spans {
			if int(n.Pos) >= s.start && int(n.Pos) < s.end {
				i = k
			}
		}
		if i < 0 || seen[i] || acts[i].kind != leafAction {
			return nil
		}
		seen[i] = true
		a := acts[i]
		if a.decl = len(n.Pipe.Decl) != 0; a.decl {
			continue
		}
		esc := escapers(n.Pipe)
		a.esc = esc
		if !sameEscaping(a.origEsc, esc) {
			return nil // e.g. an action in an HTML comment, which html/template prints as nothing
		}
		// html/template's escapers are called through reflection like any template function, a
		// large part of a render's cost; where they are ones this file reproduces (see
		// escapeHTML, isSafeURL, processURL), one function does their work and the check's.
		switch {
		case !a.inAttr && len(esc) == 1 && esc[0] == "_html_template_htmlescaper":
			replaceEscapers(t.Tree, n, len(esc), "herald_text_value")
		case a.inAttr && len(esc) > 0 && esc[len(esc)-1] == "_html_template_attrescaper":
			c := &attrCheck{pre: a.pre, suf: a.suf}
			idx := strconv.Itoa(len(p.attrs))
			p.attrs = append(p.attrs, c)
			if c.url, c.filter, c.norm = urlEscapers(esc[:len(esc)-1]); c.url >= 0 {
				replaceEscapers(t.Tree, n, len(esc), "herald_attr_value", idx)
			} else {
				appendCommand(t.Tree, n, "herald_attr", idx)
			}
		default:
			return nil
		}
	}
	for i, a := range acts {
		if a.kind == leafAction && !seen[i] {
			return nil
		}
	}
	return t
}

// sameEscaping: the action is escaped the same way in the template as written and in the fast
// template, but for the last, HTML-escaping step, whose spelling the sanitiser normalises (a
// value that was escaped for an unquoted attribute or a <textarea> is now in a quoted attribute
// or in text).
func sameEscaping(orig, fast []string) bool {
	last := func(e []string) ([]string, bool) {
		if len(e) == 0 {
			return nil, false
		}
		switch e[len(e)-1] {
		case "_html_template_htmlescaper", "_html_template_rcdataescaper", "_html_template_attrescaper",
			"_html_template_nospaceescaper":
			return e[:len(e)-1], true
		}
		return nil, false
	}
	o, ok1 := last(orig)
	f, ok2 := last(fast)
	return ok1 && ok2 && equalStrings(o, f)
}

// actionNodes lists the action nodes of a tree in source order.
func actionNodes(n parse.Node, out []*parse.ActionNode) []*parse.ActionNode {
	switch n := n.(type) {
	case *parse.ListNode:
		if n != nil {
			for _, c := range n.Nodes {
				out = actionNodes(c, out)
			}
		}
	case *parse.ActionNode:
		out = append(out, n)
	case *parse.IfNode:
		out = actionNodes(n.ElseList, actionNodes(n.List, out))
	case *parse.RangeNode:
		out = actionNodes(n.ElseList, actionNodes(n.List, out))
	case *parse.WithNode:
		out = actionNodes(n.ElseList, actionNodes(n.List, out))
	}
	return out
}

// escapers returns the names of the escapers html/template appended to a pipeline.
func escapers(p *parse.PipeNode) []string {
	var out []string
	for i := len(p.Cmds) - 1; i >= 0; i-- {
		c := p.Cmds[i]
		id, ok := c.Args[0].(*parse.IdentifierNode)
		if !ok || len(c.Args) != 1 || !strings.HasPrefix(id.Ident, "_html_template_") {
			break
		}
		out = append([]string{id.Ident}, out...)
	}
	return out
}

// appendCommand adds `| fn args...` to the end of an action's pipeline.
func appendCommand(tree *parse.Tree, n *parse.ActionNode, fn string, args ...string) {
	cmd := &parse.CommandNode{NodeType: parse.NodeCommand, Pos: n.Pos}
	cmd.Args = append(cmd.Args, parse.NewIdentifier(fn).SetTree(tree).SetPos(n.Pos))
	for _, a := range args {
		cmd.Args = append(cmd.Args, &parse.StringNode{NodeType: parse.NodeString, Pos: n.Pos, Quoted: strconv.Quote(a), Text: a})
	}
	n.Pipe.Cmds = append(n.Pipe.Cmds, cmd)
}

// replaceEscapers replaces the last k commands of an action's pipeline (html/template's
// escapers) with `| fn args...`.
func replaceEscapers(tree *parse.Tree, n *parse.ActionNode, k int, fn string, args ...string) {
	n.Pipe.Cmds = n.Pipe.Cmds[:len(n.Pipe.Cmds)-k]
	appendCommand(tree, n, fn, args...)
}

// urlEscapers tells which of the URL escapers that html/template puts before an attribute's
// attrescaper were applied: url is 0 for none, 1 for a URL (filter: urlfilter first, norm:
// urlnormalizer rather than urlescaper), -1 for any other chain (not reproduced here).
func urlEscapers(esc []string) (url int, filter, norm bool) {
	switch strings.Join(esc, " ") {
	case "":
		return 0, false, false
	case "_html_template_urlfilter _html_template_urlnormalizer":
		return 1, true, true
	case "_html_template_urlnormalizer":
		return 1, false, true
	case "_html_template_urlescaper":
		return 1, false, false
	case "_html_template_urlfilter _html_template_urlescaper":
		return 1, true, false
	}
	return -1, false, false
}

// escapeHTML is html/template's htmlescaper and attrescaper for a plain (untyped) string: its
// replacement table is ASCII only, so bytes do as well as runes.
func escapeHTML(s string) string {
	if !strings.ContainsAny(s, "\x00\"&'+<>") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case 0:
			b.WriteString("\uFFFD")
		case '"':
			b.WriteString("&#34;")
		case '&':
			b.WriteString("&amp;")
		case '\'':
			b.WriteString("&#39;")
		case '+':
			b.WriteString("&#43;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// escapedTextValue is html/template's htmlescaper followed by textValue. Typed content
// (template.HTML and the like), which html/template escapes differently, takes the per-render
// path.
func escapedTextValue(v any) (string, error) {
	s, typed := stringify(v)
	if typed {
		return "", errDeopt
	}
	return textValue(escapeHTML(s))
}

// textValue brings an action's output in element text, escaped by html/template, to the form
// the sanitiser writes: the same characters, spelled as x/net/html spells them ("+" rather than
// "&#43;", line feeds for carriage returns, non-characters raw). Output that is not plain
// escaped text (a template.HTML value with markup or a NUL) stops the render.
func textValue(s string) (string, error) {
	if !strings.ContainsAny(s, "&\r\"'><\x00") {
		return s, nil
	}
	return respell(s)
}

func respell(s string) (string, error) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '<', 0:
			return "", errDeopt
		case '>':
			b.WriteString("&gt;")
		case '"':
			b.WriteString("&#34;")
		case '\'':
			b.WriteString("&#39;")
		case '\r':
			b.WriteByte('\n')
			if i+1 < len(s) && s[i+1] == '\n' {
				i++
			}
		case '&':
			end := strings.IndexByte(s[i:], ';')
			if end < 0 {
				return "", errDeopt
			}
			ent := s[i : i+end+1]
			switch {
			case ent == "&amp;" || ent == "&lt;" || ent == "&gt;" || ent == "&#34;" || ent == "&#39;":
				b.WriteString(ent)
			case ent == "&#43;":
				b.WriteByte('+')
			case strings.HasPrefix(ent, "&#x"):
				n, err := strconv.ParseUint(ent[3:len(ent)-1], 16, 32)
				if err != nil || n == 0 || n > 0x10ffff || (n >= 0xd800 && n <= 0xdfff) {
					return "", errDeopt
				}
				b.WriteRune(rune(n))
			default:
				return "", errDeopt
			}
			i += end
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// attrCheck validates the output of one action in an attribute value. The sanitiser decides an
// attribute by its element, its name and its whole value (a URL must parse, most attributes
// match a pattern), so the action's output is put into the sanitised start tag around it and
// that tag must come out of Sanitize unchanged; otherwise the render stops. The last value
// checked is kept, so a value shared by all recipients (a link function) is checked once.
type attrCheck struct {
	pre, suf string
	// The escapers checkAttrValue applies before attrescaper's work: see urlEscapers.
	url          int
	filter, norm bool
	last         atomic.Pointer[checked]
}

type checked struct {
	in, out string
	ok      bool
}

// checkAttrValue is html/template's escapers of the attribute (see urlEscapers) followed by
// checkAttr. Typed content takes the per-render path.
func (p *presanitized) checkAttrValue(idx string, v any) (string, error) {
	i, err := strconv.Atoi(idx)
	if err != nil || i < 0 || i >= len(p.attrs) {
		return "", fmt.Errorf("herald_attr_value: bad index %q", idx)
	}
	s, typed := stringify(v)
	if typed {
		return "", errDeopt
	}
	if c := p.attrs[i]; c.url == 1 {
		if c.filter && !isSafeURL(s) {
			s = "#ZgotmplZ"
		}
		s = processURL(s, c.norm)
	}
	return p.checkAttr(idx, escapeHTML(s))
}

func (p *presanitized) checkAttr(idx, s string) (string, error) {
	i, err := strconv.Atoi(idx)
	if err != nil || i < 0 || i >= len(p.attrs) {
		return "", fmt.Errorf("herald_attr: bad index %q", idx)
	}
	c := p.attrs[i]
	if last := c.last.Load(); last != nil && last.in == s {
		if !last.ok {
			return "", errDeopt
		}
		return last.out, nil
	}
	out, err := respell(s)
	ok := err == nil
	if ok {
		tag := c.pre + out + c.suf
		ok = Sanitize(tag) == tag
	}
	c.last.Store(&checked{in: s, out: out, ok: ok})
	if !ok {
		return "", errDeopt
	}
	return out, nil
}

// buildText makes the text part of a template without one from the sanitised, tokenised HTML:
// html2text of it, with the actions put back as text/template actions that print what
// html2text would make of their HTML output (textOf, urlText). Only for templates without
// control actions: html2text carries state from one piece of text to the next (paragraph
// breaks depend on whether anything was printed since the last one, runs of spaces are
// collapsed across pieces), so a branch that prints nothing would change the text around it.
func (p *presanitized) buildText(sanitised string, acts []*action) *texttemplate.Template {
	for _, a := range acts {
		if a.kind == controlAction || (a.decl && a.inAttr) || (a.inAttr && a.elem == "a" && a.attr != "href") {
			return nil
		}
	}
	txt := html2text.HTML2TextWithOptions(sanitised, html2text.WithLinksInnerText(), html2text.WithUnixLineBreaks())
	var b strings.Builder
	var want []string
	seen := make([]bool, len(acts))
	rest := txt
	for {
		j := strings.Index(rest, tokenPrefix)
		if j < 0 {
			break
		}
		i, n := parseToken(rest[j:])
		if i < 0 || i >= len(acts) || seen[i] {
			return nil
		}
		seen[i] = true
		if rest[:j] != "" {
			want = append(want, rest[:j])
		}
		b.WriteString(rest[:j])
		a := acts[i]
		switch {
		case a.decl:
			b.WriteString(a.src)
		case !a.inAttr:
			b.WriteString("{{ " + a.inner + " | herald_text_of }}")
		case a.elem == "a" && a.attr == "href":
			u, ok := newURLText(a)
			if !ok {
				return nil
			}
			fmt.Fprintf(&b, "{{ %s | herald_url_text %q }}", a.inner, strconv.Itoa(len(p.links)))
			p.links = append(p.links, u)
		default:
			return nil // an attribute html2text ignores should not show
		}
		rest = rest[j+n:]
	}
	if rest != "" {
		want = append(want, rest)
	}
	b.WriteString(rest)
	for i, a := range acts {
		// Tokens in text and links show once; tokens in other attributes not at all.
		if shows := a.decl || !a.inAttr || a.attr == "href"; seen[i] != shows {
			return nil
		}
	}
	fm := funcs()
	fm["herald_text_of"] = textOf
	fm["herald_url_text"] = p.urlText
	p.addFuncs(fm)
	t, err := texttemplate.New("text").Option("missingkey=error").Funcs(fm).Parse(b.String())
	if err != nil || !equalStrings(textNodes(t.Tree.Root, nil), want) {
		return nil
	}
	return t
}

// parseToken reads the token at the start of s: its number and length, or -1.
func parseToken(s string) (int, int) {
	n := 0
	for i := len(tokenPrefix); i < len(s); i++ {
		switch c := s[i]; {
		case c == 'q' && i > len(tokenPrefix):
			return n, i + 1
		case c >= 'a' && c <= 'p' && i < len(tokenPrefix)+8:
			n = n*16 + int(c-'a')
		default:
			return -1, 0
		}
	}
	return -1, 0
}

// textOf is what html2text makes of a value printed in element text: its characters, each run
// of white space as one space. Where that depends on the text around it (an empty value, white
// space at either end, which html2text would merge with its neighbours) or the value is markup
// (a template.HTML), the render stops and takes the per-render path.
func textOf(v any) (string, error) {
	s, typed := stringify(v)
	if typed || s == "" {
		return "", errDeopt
	}
	var b strings.Builder
	b.Grow(len(s))
	space, first := false, true
	for _, r := range s {
		if r == 0 {
			r = '\uFFFD' // html/template's escaping
		}
		if html2textSpace(r) {
			if first {
				return "", errDeopt
			}
			if !space {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		first, space = false, false
		b.WriteRune(r)
	}
	if space {
		return "", errDeopt
	}
	return b.String(), nil
}

// html2textSpace reports the runes html2text writes as a (collapsible) space.
func html2textSpace(r rune) bool {
	return (r > 0 && r <= 0xD) || r == ' ' || r == 0x85 || r == 0x2028 || r == 0x2029 || (r >= 0x2008 && r <= 0x200B)
}

// urlText prints, in the text template, a link html2text shows as "text <url>": the value as
// html/template filters and percent-encodes it in the href, entity-decoded as html2text does.
type urlText struct {
	filter, norm bool   // the escapers html/template applied: urlfilter, urlnormalizer (or urlescaper)
	pre, suf     string // the rest of the href value, raw, for html2text's javascript: test
}

func newURLText(a *action) (urlText, bool) {
	u := urlText{pre: a.pre[strings.LastIndexByte(a.pre, '"')+1:]}
	end := strings.IndexByte(a.suf, '"')
	if end < 0 {
		return urlText{}, false
	}
	u.suf = a.suf[:end]
	switch strings.Join(a.esc, " ") {
	case "_html_template_urlfilter _html_template_urlnormalizer _html_template_attrescaper":
		u.filter, u.norm = true, true
	case "_html_template_urlnormalizer _html_template_attrescaper":
		u.norm = true
	case "_html_template_urlescaper _html_template_attrescaper":
	default:
		return urlText{}, false
	}
	return u, true
}

func (p *presanitized) urlText(idx string, v any) (string, error) {
	i, err := strconv.Atoi(idx)
	if err != nil || i < 0 || i >= len(p.links) {
		return "", fmt.Errorf("herald_url_text: bad index %q", idx)
	}
	u := p.links[i]
	s, typed := stringify(v)
	if typed {
		return "", errDeopt
	}
	if u.filter && !isSafeURL(s) {
		s = "#ZgotmplZ"
	}
	s = processURL(s, u.norm)
	// html2text drops a link whose href holds "javascript:", and its href pattern could match
	// an "href=" inside the value: both depend on the data, so such values take the slow path.
	if strings.Contains(u.pre+s+u.suf, "javascript:") || strings.Contains(strings.ToLower(s), "href") {
		return "", errDeopt
	}
	return s, nil
}

// stringify turns a value into the string html/template escapes (its stringify): typed
// content (template.HTML and the like) is reported, not printed.
func stringify(v any) (string, bool) {
	switch s := indirect(v).(type) {
	case string:
		return s, false
	case htmltemplate.CSS, htmltemplate.HTML, htmltemplate.HTMLAttr, htmltemplate.JS, htmltemplate.JSStr,
		htmltemplate.URL, htmltemplate.Srcset:
		return "", true
	}
	if v == nil {
		return "", false
	}
	return fmt.Sprint(indirectToStringerOrError(v)), false
}

func indirect(a any) any {
	if a == nil {
		return nil
	}
	v := reflect.ValueOf(a)
	if v.Kind() != reflect.Pointer {
		return a
	}
	for v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	return v.Interface()
}

func indirectToStringerOrError(a any) any {
	v := reflect.ValueOf(a)
	stringer, errType := reflect.TypeFor[fmt.Stringer](), reflect.TypeFor[error]()
	for !v.Type().Implements(stringer) && !v.Type().Implements(errType) && v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	return v.Interface()
}

// isSafeURL and processURL are html/template's URL filter and percent-encoder.
func isSafeURL(s string) bool {
	if protocol, _, ok := strings.Cut(s, ":"); ok && !strings.Contains(protocol, "/") {
		return strings.EqualFold(protocol, "http") || strings.EqualFold(protocol, "https") || strings.EqualFold(protocol, "mailto")
	}
	return true
}

func processURL(s string, norm bool) string {
	var b strings.Builder
	written := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '!', '#', '$', '&', '*', '+', ',', '/', ':', ';', '=', '?', '@', '[', ']':
			if norm {
				continue
			}
		case '-', '.', '_', '~':
			continue
		case '%':
			if norm && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
				continue
			}
		default:
			if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
				continue
			}
		}
		b.WriteString(s[written:i])
		fmt.Fprintf(&b, "%%%02x", c)
		written = i + 1
	}
	if written == 0 {
		return s
	}
	b.WriteString(s[written:])
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
