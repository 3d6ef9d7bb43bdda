package templates

import (
	"bytes"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"strings"
	"sync"
	texttemplate "text/template"

	"github.com/k3a/html2text"

	"herald/internal/contacts"
)

// Compiled is a template parsed and checked once, ready to render many times (a campaign renders
// one version for every recipient). It is safe for concurrent use.
type Compiled struct {
	subject *texttemplate.Template
	html    *htmltemplate.Template // nil when the version has no HTML part
	text    *texttemplate.Template // nil when the text part is generated from the HTML
	fast    *presanitized          // nil when the HTML is sanitised at every render
	// The flat forms of the parts that have one (see flatTemplate); nil otherwise.
	flatSubject, flatText, flatFastHTML, flatFastText *flatTemplate
	// bufs holds output buffers between renders: a campaign renders the same parts for every
	// recipient, and growing a fresh buffer to a newsletter's size each time was most of a
	// render's allocation.
	bufs *sync.Pool
}

// Compile parses and checks every part of t. Problems are returned as *PartError.
func Compile(t Template) (*Compiled, error) {
	c := Compiled{bufs: &sync.Pool{New: func() any { return &cappedBuffer{max: MaxRenderedBytes} }}}
	var err error
	if c.subject, err = parseText("subject", t.Subject); err != nil {
		return nil, err
	}
	if strings.TrimSpace(t.Text) != "" {
		if c.text, err = parseText("text", t.Text); err != nil {
			return nil, err
		}
	}
	if strings.TrimSpace(t.HTML) != "" {
		if c.html, err = parseHTML(t.HTML); err != nil {
			return nil, err
		}
		c.fast = presanitize(t.HTML, c.html.Tree)
	}
	if c.html == nil && c.text == nil {
		return nil, &PartError{Part: "html", Err: errors.New("html or text is required")}
	}
	c.flatSubject = flatOf(c.subject.Tree, nil)
	if c.text != nil {
		c.flatText = flatOf(c.text.Tree, nil)
	}
	if c.fast != nil {
		// The fast HTML template was escaped when presanitize checked it: its tree is final.
		c.flatFastHTML = flatOf(c.fast.html.Tree, c.fast.finishers)
		if c.fast.text != nil {
			c.flatFastText = flatOf(c.fast.text.Tree, c.fast.finishers)
		}
	}
	return &c, nil
}

func parseText(part, src string) (*texttemplate.Template, error) {
	t, err := texttemplate.New(part).Option("missingkey=error").Funcs(funcs()).Parse(src)
	if err != nil {
		return nil, &PartError{Part: part, Err: err}
	}
	if err := checkTree(part, t.Tree, len(t.Templates())); err != nil {
		return nil, err
	}
	return t, nil
}

func parseHTML(src string) (*htmltemplate.Template, error) {
	t, err := htmltemplate.New("html").Option("missingkey=error").Funcs(htmltemplate.FuncMap(funcs())).Parse(src)
	if err != nil {
		return nil, &PartError{Part: "html", Err: err}
	}
	if err := checkTree("html", t.Tree, len(t.Templates())); err != nil {
		return nil, err
	}
	// html/template escapes contextually on the first execution and reports there what it cannot
	// escape (an unclosed attribute, an action in an attribute name). Run it once without data to
	// surface those now; with nil data the first field lookup stops execution at once.
	var escErr *htmltemplate.Error
	if err := t.Execute(io.Discard, nil); errors.As(err, &escErr) {
		return nil, &PartError{Part: "html", Err: err}
	}
	return t, nil
}

// Render compiles t and executes it with data; see Compiled.Render.
func Render(t Template, data map[string]any) (Rendered, error) {
	c, err := Compile(t)
	if err != nil {
		return Rendered{}, err
	}
	return c.Render(data)
}

// Presanitized reports whether the HTML part was sanitised once at Compile, so that Render does
// not sanitise each message (see the package doc); false for a template without HTML, or one
// whose HTML the sanitiser must see rendered.
func (c *Compiled) Presanitized() bool { return c.fast != nil }

// Render executes the template with data. The subject must come out on one line
// (ErrSubjectLineBreak), the HTML is sanitised, and a missing text part is generated from the
// sanitised HTML. Errors are *PartError naming the part.
func (c *Compiled) Render(data map[string]any) (Rendered, error) {
	return c.render(&renderData{m: normalizeMap(data)})
}

// RenderContact is Render for the data {"contact": ContactData(contact)}, what a campaign
// renders for each recipient. ContactData's map is already normalised, so it is not copied again,
// and it is built only if a part must run its template: flat parts read the contact's fields
// (see renderData).
func (c *Compiled) RenderContact(contact contacts.Contact) (Rendered, error) {
	return c.render(&renderData{contact: &contact})
}

// render is Render for data already normalised.
func (c *Compiled) render(data *renderData) (Rendered, error) {
	var out Rendered
	var err error
	if out.Subject, err = c.run("subject", c.subject, c.flatSubject, data); err != nil {
		return Rendered{}, err
	}
	if strings.ContainsAny(out.Subject, "\r\n") {
		return Rendered{}, &PartError{Part: "subject", Err: ErrSubjectLineBreak}
	}
	out.Subject = strings.TrimSpace(out.Subject)
	fast := false
	if c.fast != nil {
		// Any failure of the fast template, a value the sanitiser would change (errDeopt) as
		// much as a missing key, is left to the template as written, which reports errors
		// against the source the author wrote.
		out.HTML, err = c.run("html", c.fast.html, c.flatFastHTML, data)
		fast = err == nil
	}
	if c.html != nil && !fast {
		html, err := c.execute("html", c.html, data.data())
		if err != nil {
			return Rendered{}, err
		}
		out.HTML = Sanitize(html)
	}
	switch {
	case c.text != nil:
		if out.Text, err = c.run("text", c.text, c.flatText, data); err != nil {
			return Rendered{}, err
		}
	case fast && c.fast.text != nil:
		if out.Text, err = c.run("text", c.fast.text, c.flatFastText, data); err == nil {
			out.Text = strings.TrimSpace(out.Text)
			break
		}
		out.Text = TextFromHTML(out.HTML)
	default:
		out.Text = TextFromHTML(out.HTML)
	}
	return out, nil
}

// run executes a part: through its flat form when it has one and that gives the output, else
// through the template, which also reports any error.
func (c *Compiled) run(part string, t executor, flat *flatTemplate, data *renderData) (string, error) {
	if flat != nil {
		if out, ok := flat.execute(data); ok {
			return out, nil
		}
	}
	return c.execute(part, t, data.data())
}

// TextFromHTML makes the plain-text alternative of an HTML body: paragraphs and line breaks kept,
// links written as their text followed by the URL.
func TextFromHTML(html string) string {
	return strings.TrimSpace(html2text.HTML2TextWithOptions(html,
		html2text.WithLinksInnerText(), html2text.WithUnixLineBreaks()))
}

// executor is what text/template and html/template templates have in common.
type executor interface {
	Execute(w io.Writer, data any) error
}

// maxPooledBuffer is the largest buffer kept for reuse; a rare huge render does not pin its
// memory.
const maxPooledBuffer = 256 << 10

func (c *Compiled) execute(part string, t executor, data map[string]any) (string, error) {
	w := c.bufs.Get().(*cappedBuffer)
	defer func() {
		if w.buf.Cap() <= maxPooledBuffer {
			w.buf.Reset()
			c.bufs.Put(w)
		}
	}()
	if err := t.Execute(w, data); err != nil {
		if errors.Is(err, errOutputTooLarge) {
			err = errOutputTooLarge
		}
		return "", &PartError{Part: part, Err: err}
	}
	return w.buf.String(), nil
}

var errOutputTooLarge = fmt.Errorf("rendered output exceeds %d bytes", MaxRenderedBytes)

// cappedBuffer fails writes beyond max bytes, which stops a template's execution.
type cappedBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if b.buf.Len()+len(p) > b.max {
		return 0, errOutputTooLarge
	}
	return b.buf.Write(p)
}
