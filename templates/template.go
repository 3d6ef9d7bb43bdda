package templates

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Limits on template size.
const (
	// MaxPartBytes bounds the source of each part (subject, html, text).
	MaxPartBytes = 512 << 10
	// MaxRenderedBytes bounds the rendered output of each part.
	MaxRenderedBytes = 2 << 20
	// maxNameLen bounds a template name.
	maxNameLen = 100
)

// Template is one stored version of a named template.
type Template struct {
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	Subject   string    `json:"subject"`
	HTML      string    `json:"html"`
	Text      string    `json:"text"`
	CreatedAt time.Time `json:"created_at"`
}

// Input is what Create stores as a new version.
type Input struct {
	Name    string `json:"name"`
	Subject string `json:"subject"`
	HTML    string `json:"html"`
	Text    string `json:"text"`
}

// Rendered is a template executed with data: a one-line subject, sanitised HTML and plain text.
type Rendered struct {
	Subject string `json:"subject"`
	HTML    string `json:"html"`
	Text    string `json:"text"`
}

// PartError is a problem with one part of a template ("name", "subject", "html" or "text"):
// invalid input, a parse error, or a failure while rendering.
type PartError struct {
	Part string
	Err  error
}

func (e *PartError) Error() string { return e.Part + ": " + e.Err.Error() }

func (e *PartError) Unwrap() error { return e.Err }

// ErrSubjectLineBreak is returned (inside a *PartError) when a rendered subject holds CR or LF.
var ErrSubjectLineBreak = errors.New("the rendered subject contains a line break (CR or LF); data cannot add mail headers")

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// ValidName checks a template name: 1-100 letters, digits, '.', '_' or '-', starting with a
// letter or digit (so that a name is never "." or ".." in a URL path).
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("use 1-%d letters, digits, '.', '_' or '-', starting with a letter or digit", maxNameLen)
	}
	return nil
}

// validate checks everything about in that does not need parsing.
func (in Input) validate() error {
	if err := ValidName(in.Name); err != nil {
		return &PartError{Part: "name", Err: err}
	}
	for _, p := range []struct{ part, src string }{{"subject", in.Subject}, {"html", in.HTML}, {"text", in.Text}} {
		if len(p.src) > MaxPartBytes {
			return &PartError{Part: p.part, Err: fmt.Errorf("is %d bytes; the limit is %d", len(p.src), MaxPartBytes)}
		}
	}
	if strings.TrimSpace(in.Subject) == "" {
		return &PartError{Part: "subject", Err: errors.New("is required")}
	}
	if strings.ContainsAny(in.Subject, "\r\n") {
		return &PartError{Part: "subject", Err: errors.New("must be one line (no CR or LF)")}
	}
	if strings.TrimSpace(in.HTML) == "" && strings.TrimSpace(in.Text) == "" {
		return &PartError{Part: "html", Err: errors.New("html or text is required")}
	}
	return nil
}
