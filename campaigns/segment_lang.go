package campaigns

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"herald/internal/contacts"
)

// Limits of a segment filter: its length, how deeply it nests (parentheses and not) and how
// many comparisons it holds. They bound both the filterParser and the SQL it produces.
const (
	maxFilterBytes       = 4096
	maxFilterDepth       = 32
	maxFilterComparisons = 100
	maxNumberLen         = 40
)

// FilterError is a filter the compiler refuses: what is wrong and where.
type FilterError struct {
	// Position is the 1-based character (not byte) position of the fault in the filter.
	Position int
	Detail   string
}

func (e *FilterError) Error() string { return fmt.Sprintf("at position %d: %s", e.Position, e.Detail) }

// CompileSegment compiles a segment filter into a SQL boolean expression over the contacts row
// named alias. Every value of the filter becomes a $N placeholder whose value is appended to args
// (numbering continues after the args given); the SQL text holds only column names, operators and
// constants of the compiler's own. The expression is never NULL and never raises an error at run
// time, whatever the contacts' attributes hold. A refused filter is a *FilterError.
//
// The language:
//
//	filter     = or
//	or         = and { "or" and }
//	and        = unary { "and" unary }
//	unary      = "not" unary | "(" or ")" | comparison
//	comparison = field ( "=" | "!=" | "<" | "<=" | ">" | ">=" ) value
//	           | field [ "not" ] "in" "(" value { "," value } ")"
//	           | field ( "contains" | "starts_with" | "ends_with" ) value
//	           | attribute "exists"
//	field      = "email" | "name" | "locale" | "timezone" | "external_id"
//	           | "created_at" | "updated_at" | attribute
//	attribute  = "attributes." KEY            (KEY: 1-64 of A-Z a-z 0-9 _ -)
//	value      = "string" | number | true | false | null
//
// Keywords are case-insensitive; field names are lower-case. Strings are double-quoted with \" and
// \\ as the only escapes and no control characters; numbers are JSON numbers.
//
// Text fields (email, name, locale, timezone, external_id) compare with strings only; < and >
// use the database collation; contains, starts_with and ends_with are case-sensitive substring
// tests (%, _ and \ match themselves). An email compared with = or in is normalised first, as
// stored addresses are (domain lower-cased). created_at and updated_at compare (=, !=, <, <=, >,
// >=) with a string holding an RFC 3339 time or a date (YYYY-MM-DD, midnight UTC).
//
// Attributes compare with values of their JSON type; a value of another type, or a missing key,
// does not match (so != and not in match only present values of the filterLiteral's type; write
// `not attributes.plan = "pro"` to include contacts without a plan). = null matches a JSON null
// or a missing key and != null a present non-null value. < <= > >= take numbers or strings.
// contains matches a string holding the text or an array holding the value; starts_with and
// ends_with match strings; exists matches a present key, whatever its value.
//
// Limits: 4 KiB of filter, nesting 32 deep, 100 comparisons.
func CompileSegment(filter, alias string, args []any) (string, []any, error) {
	f, err := parseFilter(filter)
	if err != nil {
		return "", args, err
	}
	return f.sql(alias, args)
}

// ---- filterLexer ----

type filterTokKind int

const (
	ftokEOF filterTokKind = iota
	ftokIdent
	ftokAttr // attributes.KEY; text holds KEY
	ftokString
	ftokNumber
	ftokLParen
	ftokRParen
	ftokComma
	ftokOp
)

type filterToken struct {
	kind filterTokKind
	text string // identifier (as written), KEY, operator, number text or decoded string
	pos  int    // byte offset
}

var filterAttrKeyRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

type filterLexer struct {
	src  string
	toks []filterToken
}

func (l *filterLexer) fail(off int, format string, a ...any) *FilterError {
	return &FilterError{Position: utf8.RuneCountInString(l.src[:min(off, len(l.src))]) + 1, Detail: fmt.Sprintf(format, a...)}
}

func filterIsIdentStart(c byte) bool { return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func filterIsIdentChar(c byte) bool  { return filterIsIdentStart(c) || '0' <= c && c <= '9' }
func filterIsKeyChar(c byte) bool    { return filterIsIdentChar(c) || c == '-' }
func filterIsDigit(c byte) bool      { return '0' <= c && c <= '9' }

func lexFilter(src string) ([]filterToken, error) {
	l := &filterLexer{src: src}
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			l.toks = append(l.toks, filterToken{ftokLParen, "(", i})
			i++
		case c == ')':
			l.toks = append(l.toks, filterToken{ftokRParen, ")", i})
			i++
		case c == ',':
			l.toks = append(l.toks, filterToken{ftokComma, ",", i})
			i++
		case c == '=':
			l.toks = append(l.toks, filterToken{ftokOp, "=", i})
			i++
		case c == '!':
			if i+1 < len(src) && src[i+1] == '=' {
				l.toks = append(l.toks, filterToken{ftokOp, "!=", i})
				i += 2
				continue
			}
			return nil, l.fail(i, "expected != ")
		case c == '<' || c == '>':
			op := string(c)
			if i+1 < len(src) && src[i+1] == '=' {
				op += "="
			}
			l.toks = append(l.toks, filterToken{ftokOp, op, i})
			i += len(op)
		case c == '"':
			s, n, err := l.lexString(i)
			if err != nil {
				return nil, err
			}
			l.toks = append(l.toks, filterToken{ftokString, s, i})
			i += n
		case c == '-' || filterIsDigit(c):
			n, err := l.lexNumber(i)
			if err != nil {
				return nil, err
			}
			l.toks = append(l.toks, filterToken{ftokNumber, src[i : i+n], i})
			i += n
		case filterIsIdentStart(c):
			j := i
			for j < len(src) && filterIsIdentChar(src[j]) {
				j++
			}
			word := src[i:j]
			if word == "attributes" && j < len(src) && src[j] == '.' {
				k := j + 1
				for k < len(src) && filterIsKeyChar(src[k]) {
					k++
				}
				key := src[j+1 : k]
				if !filterAttrKeyRE.MatchString(key) {
					return nil, l.fail(j+1, "an attribute key is 1-64 letters, digits, '_' or '-'")
				}
				l.toks = append(l.toks, filterToken{ftokAttr, key, i})
				i = k
				continue
			}
			l.toks = append(l.toks, filterToken{ftokIdent, word, i})
			i = j
		default:
			r, _ := utf8.DecodeRuneInString(src[i:])
			return nil, l.fail(i, "unexpected character %q", r)
		}
	}
	l.toks = append(l.toks, filterToken{ftokEOF, "", len(src)})
	return l.toks, nil
}

// lexString reads a double-quoted string at src[start] and returns its value and length.
func (l *filterLexer) lexString(start int) (string, int, error) {
	var b strings.Builder
	for i := start + 1; i < len(l.src); {
		c := l.src[i]
		switch {
		case c == '"':
			return b.String(), i + 1 - start, nil
		case c == '\\':
			if i+1 < len(l.src) && (l.src[i+1] == '"' || l.src[i+1] == '\\') {
				b.WriteByte(l.src[i+1])
				i += 2
				continue
			}
			return "", 0, l.fail(i, `the only escapes in a string are \" and \\`)
		case c < 0x20 || c == 0x7f:
			return "", 0, l.fail(i, "a string must not contain control characters")
		default:
			b.WriteByte(c)
			i++
		}
	}
	return "", 0, l.fail(start, "unterminated string")
}

// lexNumber reads a JSON number at src[start] and returns its length. Its magnitude must fit a
// float64, so PostgreSQL's jsonb and numeric take it.
func (l *filterLexer) lexNumber(start int) (int, error) {
	s, i := l.src, start
	if s[i] == '-' {
		i++
	}
	digits := func() int {
		j := i
		for i < len(s) && filterIsDigit(s[i]) {
			i++
		}
		return i - j
	}
	if i < len(s) && s[i] == '0' {
		i++
	} else if digits() == 0 {
		return 0, l.fail(start, "expected a number")
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return 0, l.fail(start, "a number needs digits after the decimal point")
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		from := i
		if digits() == 0 {
			return 0, l.fail(start, "a number needs digits in its exponent")
		}
		// PostgreSQL's numeric refuses exponents beyond ±1000, even of zero.
		if e, err := strconv.Atoi(s[from:i]); err != nil || e > 300 {
			return 0, l.fail(start, "number out of range")
		}
	}
	if i < len(s) && (filterIsIdentChar(s[i]) || s[i] == '.') {
		return 0, l.fail(start, "malformed number")
	}
	if i-start > maxNumberLen {
		return 0, l.fail(start, "a number is at most %d characters", maxNumberLen)
	}
	if _, err := strconv.ParseFloat(s[start:i], 64); err != nil {
		return 0, l.fail(start, "number out of range")
	}
	return i - start, nil
}

// ---- syntax tree ----

type filterFieldKind int

const (
	ffieldText filterFieldKind = iota
	ffieldTime
	ffieldAttr
)

// filterTextFields and filterTimeFields map filter field names to contacts columns.
var (
	filterTextFields = map[string]string{"email": "email", "name": "name", "locale": "locale", "timezone": "timezone", "external_id": "external_id"}
	filterTimeFields = map[string]string{"created_at": "created_at", "updated_at": "updated_at"}
)

type filterLitKind int

const (
	flitString filterLitKind = iota
	flitNumber
	flitBool
	flitNull
)

type filterLiteral struct {
	kind filterLitKind
	text string // string value, number text, "true"/"false"
	pos  int
}

// json returns the filterLiteral as a JSON value.
func (v filterLiteral) json() json.RawMessage {
	switch v.kind {
	case flitString:
		b, _ := json.Marshal(v.text)
		return b
	case flitNull:
		return json.RawMessage("null")
	}
	return json.RawMessage(v.text)
}

// jsonType is jsonb_typeof's name for the filterLiteral's type.
func (v filterLiteral) jsonType() string {
	return [...]string{flitString: "string", flitNumber: "number", flitBool: "boolean", flitNull: "null"}[v.kind]
}

type filterNode interface{ isFilterNode() }

type filterBoolNode struct {
	or   bool
	kids []filterNode
}

type filterNotNode struct{ x filterNode }

type filterCmpNode struct {
	kind   filterFieldKind
	column string // contacts column (text and time fields)
	key    string // attribute key
	op     string // = != < <= > >= in notin contains starts_with ends_with exists
	vals   []filterLiteral
	times  []time.Time
}

func (filterBoolNode) isFilterNode() {}
func (filterNotNode) isFilterNode()  {}
func (filterCmpNode) isFilterNode()  {}

// filterAST is a parsed, type-checked filter.
type filterAST struct{ root filterNode }

// ---- filterParser ----

type filterParser struct {
	lx    *filterLexer
	toks  []filterToken
	i     int
	count int
}

func parseFilter(src string) (*filterAST, error) {
	lx := &filterLexer{src: src}
	if len(src) > maxFilterBytes {
		return nil, &FilterError{Position: 1, Detail: fmt.Sprintf("a filter is at most %d bytes", maxFilterBytes)}
	}
	if !utf8.ValidString(src) {
		return nil, &FilterError{Position: 1, Detail: "a filter must be valid UTF-8"}
	}
	toks, err := lexFilter(src)
	if err != nil {
		return nil, err
	}
	p := &filterParser{lx: lx, toks: toks}
	if toks[0].kind == ftokEOF {
		return nil, lx.fail(0, "the filter is empty")
	}
	root, err := p.parseOr(0)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != ftokEOF {
		return nil, lx.fail(t.pos, "expected and, or or the end of the filter")
	}
	return &filterAST{root: root}, nil
}

func (p *filterParser) peek() filterToken { return p.toks[p.i] }
func (p *filterParser) next() filterToken {
	t := p.toks[p.i]
	if t.kind != ftokEOF {
		p.i++
	}
	return t
}

// filterKeyword reports whether t is the filterKeyword kw (case-insensitive).
func filterKeyword(t filterToken, kw string) bool {
	return t.kind == ftokIdent && strings.EqualFold(t.text, kw)
}

func (p *filterParser) parseOr(depth int) (filterNode, error) {
	return p.parseChain(depth, true)
}

// parseChain parses operands joined by or (when or) or by and.
func (p *filterParser) parseChain(depth int, or bool) (filterNode, error) {
	operand := func() (filterNode, error) {
		if or {
			return p.parseChain(depth, false)
		}
		return p.parseUnary(depth)
	}
	first, err := operand()
	if err != nil {
		return nil, err
	}
	kw := "and"
	if or {
		kw = "or"
	}
	kids := []filterNode{first}
	for filterKeyword(p.peek(), kw) {
		p.next()
		n, err := operand()
		if err != nil {
			return nil, err
		}
		kids = append(kids, n)
	}
	if len(kids) == 1 {
		return first, nil
	}
	return filterBoolNode{or: or, kids: kids}, nil
}

func (p *filterParser) parseUnary(depth int) (filterNode, error) {
	t := p.peek()
	if depth > maxFilterDepth {
		return nil, p.lx.fail(t.pos, "the filter nests more than %d levels deep", maxFilterDepth)
	}
	switch {
	case filterKeyword(t, "not"):
		p.next()
		x, err := p.parseUnary(depth + 1)
		if err != nil {
			return nil, err
		}
		return filterNotNode{x: x}, nil
	case t.kind == ftokLParen:
		p.next()
		x, err := p.parseOr(depth + 1)
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != ftokRParen {
			return nil, p.lx.fail(c.pos, "expected )")
		}
		return x, nil
	}
	return p.parseComparison()
}

func (p *filterParser) parseComparison() (filterNode, error) {
	t := p.next()
	var c filterCmpNode
	switch t.kind {
	case ftokAttr:
		c.kind, c.key = ffieldAttr, t.text
	case ftokIdent:
		if col, ok := filterTextFields[t.text]; ok {
			c.kind, c.column = ffieldText, col
		} else if col, ok := filterTimeFields[t.text]; ok {
			c.kind, c.column = ffieldTime, col
		} else if t.text == "attributes" {
			return nil, p.lx.fail(t.pos, "name an attribute: attributes.KEY")
		} else {
			return nil, p.lx.fail(t.pos, "unknown field; fields are email, name, locale, timezone, external_id, created_at, updated_at and attributes.KEY")
		}
	case ftokEOF:
		return nil, p.lx.fail(t.pos, "unexpected end of the filter: expected a comparison")
	default:
		return nil, p.lx.fail(t.pos, "expected a field")
	}
	p.count++
	if p.count > maxFilterComparisons {
		return nil, p.lx.fail(t.pos, "a filter holds at most %d comparisons", maxFilterComparisons)
	}
	opTok := p.next()
	switch {
	case opTok.kind == ftokOp:
		c.op = opTok.text
		v, err := p.parseValue()
		if err != nil {
			return nil, err
		}
		c.vals = []filterLiteral{v}
	case filterKeyword(opTok, "in"):
		c.op = "in"
	case filterKeyword(opTok, "not"):
		if in := p.next(); !filterKeyword(in, "in") {
			return nil, p.lx.fail(in.pos, "expected in after not")
		}
		c.op = "notin"
	case filterKeyword(opTok, "contains"), filterKeyword(opTok, "starts_with"), filterKeyword(opTok, "ends_with"):
		c.op = strings.ToLower(opTok.text)
		v, err := p.parseValue()
		if err != nil {
			return nil, err
		}
		c.vals = []filterLiteral{v}
	case filterKeyword(opTok, "exists"):
		c.op = "exists"
	case opTok.kind == ftokEOF:
		return nil, p.lx.fail(opTok.pos, "unexpected end of the filter: expected an operator")
	default:
		return nil, p.lx.fail(opTok.pos, "expected an operator (=, !=, <, <=, >, >=, in, not in, contains, starts_with, ends_with, exists)")
	}
	if c.op == "in" || c.op == "notin" {
		vals, err := p.parseList()
		if err != nil {
			return nil, err
		}
		c.vals = vals
	}
	return c, p.check(&c, t.pos, opTok.pos)
}

func (p *filterParser) parseValue() (filterLiteral, error) {
	t := p.next()
	switch {
	case t.kind == ftokString:
		return filterLiteral{kind: flitString, text: t.text, pos: t.pos}, nil
	case t.kind == ftokNumber:
		return filterLiteral{kind: flitNumber, text: t.text, pos: t.pos}, nil
	case filterKeyword(t, "true"), filterKeyword(t, "false"):
		return filterLiteral{kind: flitBool, text: strings.ToLower(t.text), pos: t.pos}, nil
	case filterKeyword(t, "null"):
		return filterLiteral{kind: flitNull, text: "null", pos: t.pos}, nil
	}
	return filterLiteral{}, p.lx.fail(t.pos, `expected a value: a "string", a number, true, false or null`)
}

func (p *filterParser) parseList() ([]filterLiteral, error) {
	if t := p.next(); t.kind != ftokLParen {
		return nil, p.lx.fail(t.pos, `expected ( and a list of values, such as ("a", "b")`)
	}
	var vals []filterLiteral
	for {
		v, err := p.parseValue()
		if err != nil {
			return nil, err
		}
		vals = append(vals, v)
		t := p.next()
		if t.kind == ftokRParen {
			return vals, nil
		}
		if t.kind != ftokComma {
			return nil, p.lx.fail(t.pos, "expected , or ) in the list")
		}
	}
}

// check type-checks a comparison against its field and prepares its values.
func (p *filterParser) check(c *filterCmpNode, fieldPos, opPos int) error {
	fail := func(pos int, detail string) error { return p.lx.fail(pos, "%s", detail) }
	switch c.kind {
	case ffieldText:
		if c.op == "exists" {
			return fail(opPos, "exists applies to attributes only")
		}
		for i, v := range c.vals {
			if v.kind != flitString {
				return fail(v.pos, "this field is text: compare it with a \"string\"")
			}
			if c.column == "email" && (c.op == "=" || c.op == "!=" || c.op == "in" || c.op == "notin") {
				if n, err := contacts.NormalizeAddress(v.text); err == nil {
					c.vals[i].text = n
				}
			}
		}
	case ffieldTime:
		switch c.op {
		case "=", "!=", "<", "<=", ">", ">=":
		default:
			return fail(opPos, "a time compares with =, !=, <, <=, > or >= only")
		}
		v := c.vals[0]
		if v.kind != flitString {
			return fail(v.pos, `a time compares with a string such as "2026-01-31" or "2026-01-31T09:00:00Z"`)
		}
		tm, err := time.Parse(time.RFC3339Nano, v.text)
		if err != nil {
			tm, err = time.Parse(time.DateOnly, v.text)
		}
		if err != nil {
			return fail(v.pos, "not a date (YYYY-MM-DD) or an RFC 3339 time")
		}
		c.times = []time.Time{tm}
	case ffieldAttr:
		for _, v := range c.vals {
			switch {
			case v.kind == flitNull && c.op != "=" && c.op != "!=":
				return fail(v.pos, "null compares with = or != only")
			case v.kind == flitBool && (c.op == "<" || c.op == "<=" || c.op == ">" || c.op == ">="):
				return fail(v.pos, "< <= > >= compare numbers or strings")
			case v.kind != flitString && (c.op == "starts_with" || c.op == "ends_with"):
				return fail(v.pos, "starts_with and ends_with take a \"string\"")
			}
		}
	}
	return nil
}

// ---- SQL ----

var filterAliasRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,30}$`)

type filterSQLWriter struct {
	b     strings.Builder
	args  []any
	alias string
}

// arg appends v and returns its placeholder with the cast.
func (w *filterSQLWriter) arg(v any, cast string) string {
	w.args = append(w.args, v)
	return "$" + strconv.Itoa(len(w.args)) + "::" + cast
}

// sql renders the filter over the contacts row alias, appending its values to args.
func (f *filterAST) sql(alias string, args []any) (string, []any, error) {
	if !filterAliasRE.MatchString(alias) {
		return "", args, fmt.Errorf("compile segment: bad table alias %q", alias)
	}
	w := &filterSQLWriter{args: args, alias: alias}
	w.filterNode(f.root)
	return w.b.String(), w.args, nil
}

func (w *filterSQLWriter) filterNode(n filterNode) {
	switch n := n.(type) {
	case filterBoolNode:
		sep := " AND "
		if n.or {
			sep = " OR "
		}
		w.b.WriteByte('(')
		for i, k := range n.kids {
			if i > 0 {
				w.b.WriteString(sep)
			}
			w.filterNode(k)
		}
		w.b.WriteByte(')')
	case filterNotNode:
		w.b.WriteString("(NOT ")
		w.filterNode(n.x)
		w.b.WriteByte(')')
	case filterCmpNode:
		w.b.WriteByte('(')
		switch n.kind {
		case ffieldText:
			w.text(n)
		case ffieldTime:
			fmt.Fprintf(&w.b, "%s.%s %s %s", w.alias, n.column, filterSQLOp(n.op), w.arg(n.times[0], "timestamptz"))
		case ffieldAttr:
			w.attr(n)
		}
		w.b.WriteByte(')')
	}
}

// filterSQLOp maps a comparison operator of the language to SQL's (the same but for !=).
func filterSQLOp(op string) string {
	if op == "!=" {
		return "<>"
	}
	return op
}

// filterLikePattern escapes LIKE's metacharacters (backslash is PostgreSQL's default escape).
func filterLikePattern(op, s string) string {
	s = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
	switch op {
	case "contains":
		return "%" + s + "%"
	case "starts_with":
		return s + "%"
	}
	return "%" + s
}

func (w *filterSQLWriter) text(n filterCmpNode) {
	col := w.alias + "." + n.column
	switch n.op {
	case "in", "notin":
		vals := make([]string, len(n.vals))
		for i, v := range n.vals {
			vals[i] = v.text
		}
		if n.op == "in" {
			fmt.Fprintf(&w.b, "%s = ANY(%s)", col, w.arg(vals, "text[]"))
		} else {
			fmt.Fprintf(&w.b, "%s <> ALL(%s)", col, w.arg(vals, "text[]"))
		}
	case "contains", "starts_with", "ends_with":
		fmt.Fprintf(&w.b, "%s LIKE %s", col, w.arg(filterLikePattern(n.op, n.vals[0].text), "text"))
	default:
		fmt.Fprintf(&w.b, "%s %s %s", col, filterSQLOp(n.op), w.arg(n.vals[0].text, "text"))
	}
}

// filterKeyObject returns {key: v} as JSON text, for jsonb containment.
func filterKeyObject(key string, v json.RawMessage) string {
	b, _ := json.Marshal(map[string]json.RawMessage{key: v})
	return string(b)
}

// attr renders an attribute comparison. Values go in as JSON text cast to jsonb; a value of
// another JSON type than the filterLiteral's never matches, and nothing is cast from the attribute, so
// no row can make the query fail.
func (w *filterSQLWriter) attr(n filterCmpNode) {
	a := w.alias + ".attributes"
	switch n.op {
	case "exists":
		fmt.Fprintf(&w.b, "%s ? %s", a, w.arg(n.key, "text"))
		return
	case "in", "notin":
		objs := make([]string, len(n.vals))
		types := map[string]bool{}
		for i, v := range n.vals {
			objs[i] = filterKeyObject(n.key, v.json())
			types[v.jsonType()] = true
		}
		in := fmt.Sprintf("%s @> ANY(%s::jsonb[])", a, w.arg(objs, "text[]"))
		if n.op == "in" {
			w.b.WriteString(in)
			return
		}
		var ts []string
		for _, t := range []string{"string", "number", "boolean"} {
			if types[t] {
				ts = append(ts, "'"+t+"'")
			}
		}
		fmt.Fprintf(&w.b, "CASE WHEN jsonb_typeof(%s -> %s) IN (%s) THEN NOT (%s) ELSE false END",
			a, w.arg(n.key, "text"), strings.Join(ts, ", "), in)
		return
	}
	v := n.vals[0]
	switch n.op {
	case "=":
		if v.kind == flitNull {
			fmt.Fprintf(&w.b, "coalesce(jsonb_typeof(%s -> %s), 'null') = 'null'", a, w.arg(n.key, "text"))
			return
		}
		fmt.Fprintf(&w.b, "%s @> %s::jsonb", a, w.arg(filterKeyObject(n.key, v.json()), "text"))
	case "!=":
		k := w.arg(n.key, "text")
		if v.kind == flitNull {
			fmt.Fprintf(&w.b, "coalesce(jsonb_typeof(%s -> %s) <> 'null', false)", a, k)
			return
		}
		fmt.Fprintf(&w.b, "CASE WHEN jsonb_typeof(%s -> %s) = '%s' THEN %s -> %s <> %s::jsonb ELSE false END",
			a, k, v.jsonType(), a, k, w.arg(string(v.json()), "text"))
	case "<", "<=", ">", ">=":
		k := w.arg(n.key, "text")
		fmt.Fprintf(&w.b, "CASE WHEN jsonb_typeof(%s -> %s) = '%s' THEN %s -> %s %s %s::jsonb ELSE false END",
			a, k, v.jsonType(), a, k, n.op, w.arg(string(v.json()), "text"))
	case "contains":
		elem := w.arg(filterKeyObject(n.key, json.RawMessage("["+string(v.json())+"]")), "text")
		if v.kind != flitString {
			fmt.Fprintf(&w.b, "%s @> %s::jsonb", a, elem)
			return
		}
		k := w.arg(n.key, "text")
		fmt.Fprintf(&w.b, "CASE jsonb_typeof(%s -> %s) WHEN 'string' THEN %s ->> %s LIKE %s WHEN 'array' THEN %s @> %s::jsonb ELSE false END",
			a, k, a, k, w.arg(filterLikePattern(n.op, v.text), "text"), a, elem)
	case "starts_with", "ends_with":
		k := w.arg(n.key, "text")
		fmt.Fprintf(&w.b, "CASE WHEN jsonb_typeof(%s -> %s) = 'string' THEN %s ->> %s LIKE %s ELSE false END",
			a, k, a, k, w.arg(filterLikePattern(n.op, v.text), "text"))
	}
}
