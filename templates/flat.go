package templates

import (
	"encoding/json"
	"strings"
	"text/template/parse"
	"unicode"

	"herald/internal/contacts"
)

// flatTemplate is a template whose top level is text and actions that print a value found by
// keys from the data, {{.contact.name}} or {{index .contact.attributes "plan"}}, either as it is
// (a string) or through one of the fast templates' finishing functions ({{.contact.name |
// herald_text_value}}): what most subject lines and the pre-sanitised parts of a merge-field
// campaign are. Executing it is a few map look-ups and direct calls, where text/template
// evaluates each action by reflection (a map index and an allocation per field, a reflect.Call
// per function): most of a campaign render's cost.
//
// It gives the output the template would, or reports that it cannot: a missing key, a value of
// another type, a finisher's error (errDeopt) or an output over MaxRenderedBytes. The template
// then runs as before and reports what it reports.
type flatTemplate struct {
	steps []flatStep
	text  int // bytes of text in the steps, to size the output
}

type flatStep struct {
	text string   // printed as it is, when keys is nil
	keys []string // the field chain from the data's top
	// index is set for {{index FIELD "key"}}: the value is the chain's map's entry for key.
	index bool
	key   string
	// finish is the function the value goes through, nil when it is printed as it is.
	finish func(any) (string, error)
}

// flatOf returns tree's flat form, or nil when anything in it is not flat. finishers are the
// functions the tree may finish an action with, by name, as its template binds them; only those
// that take any value and return a string and an error are taken. They are pure (presanitize's
// escapedTextValue and textOf): one a flat render called before falling back to the template may
// be called again there.
func flatOf(tree *parse.Tree, finishers map[string]any) *flatTemplate {
	if tree == nil || tree.Root == nil {
		return nil
	}
	f := &flatTemplate{}
	for _, n := range tree.Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			f.steps = append(f.steps, flatStep{text: string(n.Text)})
			f.text += len(n.Text)
		case *parse.ActionNode:
			step, ok := flatAction(n.Pipe, finishers)
			if !ok {
				return nil
			}
			f.steps = append(f.steps, step)
		default:
			return nil
		}
	}
	return f
}

func flatAction(p *parse.PipeNode, finishers map[string]any) (flatStep, bool) {
	if p == nil || len(p.Decl) != 0 || p.IsAssign || len(p.Cmds) == 0 || len(p.Cmds) > 2 {
		return flatStep{}, false
	}
	var step flatStep
	switch args := p.Cmds[0].Args; len(args) {
	case 1: // .a.b
		field, ok := args[0].(*parse.FieldNode)
		if !ok {
			return flatStep{}, false
		}
		step.keys = field.Ident
	case 3: // index .a.b "key"
		fn, ok1 := args[0].(*parse.IdentifierNode)
		field, ok2 := args[1].(*parse.FieldNode)
		key, ok3 := args[2].(*parse.StringNode)
		if !ok1 || !ok2 || !ok3 || fn.Ident != "index" {
			return flatStep{}, false
		}
		step.keys, step.index, step.key = field.Ident, true, key.Text
	default:
		return flatStep{}, false
	}
	if len(p.Cmds) == 2 {
		args := p.Cmds[1].Args
		if len(args) != 1 {
			return flatStep{}, false
		}
		id, ok := args[0].(*parse.IdentifierNode)
		if !ok {
			return flatStep{}, false
		}
		if step.finish, ok = finishers[id.Ident].(func(any) (string, error)); !ok {
			return flatStep{}, false
		}
	}
	return step, true
}

// execute prints the template with data; ok is false where the template must run instead.
func (f *flatTemplate) execute(data *renderData) (out string, ok bool) {
	var b strings.Builder
	b.Grow(f.text + 16*len(f.steps))
	for i := range f.steps {
		step := &f.steps[i]
		if step.keys == nil {
			b.WriteString(step.text)
			continue
		}
		v, ok := data.value(step)
		if !ok {
			return "", false
		}
		var s string
		if step.finish != nil {
			var err error
			if s, err = step.finish(v); err != nil {
				return "", false
			}
		} else if s, ok = printed(v); !ok {
			return "", false
		}
		b.WriteString(s)
	}
	if b.Len() > MaxRenderedBytes {
		return "", false
	}
	return b.String(), true
}

// renderData is the data of one render: a normalised map, or for RenderContact the contact whose
// ContactData the map would be. Flat parts read a contact's fields directly, and the map is built
// only when a template runs: most renders of a merge-field campaign then build no map at all.
type renderData struct {
	m       map[string]any
	contact *contacts.Contact
}

// data is the map a template executes with.
func (d *renderData) data() map[string]any {
	if d.m == nil {
		d.m = map[string]any{"contact": ContactData(*d.contact)}
	}
	return d.m
}

// value is what a flat step prints before its finisher: the value at the step's field chain, or
// the entry for its key of the map there. ok is false where text/template would not find a value
// (missingkey=error) or where it is one a contact's fields are not read for: the template then
// runs with the map.
func (d *renderData) value(step *flatStep) (any, bool) {
	if d.m == nil && d.contact != nil {
		return contactValue(d.contact, step)
	}
	v, ok := lookup(d.data(), step.keys)
	if ok && step.index {
		var m map[string]any
		if m, ok = v.(map[string]any); ok {
			v, ok = m[step.key]
		}
	}
	return v, ok
}

// contactValue is value for data {"contact": ContactData(*c)}, read from c's fields: the same
// values, for the keys ContactData sets and the attributes' top-level entries. Deeper chains and
// keys it does not know (ContactData's newer ones among them) give ok = false.
func contactValue(c *contacts.Contact, step *flatStep) (any, bool) {
	keys := step.keys
	if len(keys) < 2 || keys[0] != "contact" {
		return nil, false
	}
	if keys[1] == "attributes" {
		var key string
		switch {
		case len(keys) == 2 && step.index:
			key = step.key
		case len(keys) == 3 && !step.index:
			key = keys[2]
		default:
			return nil, false
		}
		v, ok := c.Attributes[key]
		if !ok {
			return nil, false
		}
		return normalize(v), true
	}
	if len(keys) != 2 || step.index {
		return nil, false
	}
	switch keys[1] {
	case "external_id":
		return c.ExternalID, true
	case "email":
		return c.Email, true
	case "name":
		return c.Name, true
	case "first_name":
		return firstWord(c.Name), true
	case "locale":
		return c.Locale, true
	case "timezone":
		return c.Timezone, true
	}
	return nil, false
}

// firstWord is strings.Fields(s)[0], or "" when s has no word, without the slice.
func firstWord(s string) string {
	s = strings.TrimLeftFunc(s, unicode.IsSpace)
	if i := strings.IndexFunc(s, unicode.IsSpace); i >= 0 {
		return s[:i]
	}
	return s
}

// lookup follows keys from data through maps of the type the data's are, as text/template's
// field chain {{.a.b}} does with missingkey=error; ok is false where that would not find a value.
func lookup(data map[string]any, keys []string) (any, bool) {
	m := data
	for i, k := range keys {
		v, ok := m[k]
		if !ok {
			return nil, false
		}
		if i == len(keys)-1 {
			return v, true
		}
		if m, ok = v.(map[string]any); !ok {
			return nil, false
		}
	}
	return nil, false
}

// printed is what text/template prints for v, for the types whose printing is their own text:
// a string, and a json.Number (a Stringer whose String is the number as written).
func printed(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return string(v), true
	}
	return "", false
}
