package contacts

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
)

// ndjsonLine is one NDJSON row: the PUT body's fields plus the external id.
type ndjsonLine struct {
	ExternalID string          `json:"external_id"`
	Email      string          `json:"email"`
	Name       string          `json:"name"`
	Locale     string          `json:"locale"`
	Timezone   string          `json:"timezone"`
	Attributes json.RawMessage `json:"attributes"`
}

// ndjsonRows reads one JSON object per line.
type ndjsonRows struct {
	lines *NDJSONLines
}

func newNDJSONRows(r io.Reader) *ndjsonRows {
	return &ndjsonRows{lines: NewNDJSONLines(r)}
}

func (n *ndjsonRows) next() (parsedRow, error) {
	l, err := n.lines.Next()
	if err != nil {
		return parsedRow{}, err
	}
	if l.Malformed != "" {
		return parsedRow{row: l.Row, err: invalid("", l.Malformed)}, nil
	}
	return parseNDJSONLine(l.Row, l.Line), nil
}

// parseNDJSONLine reads the contact of one line, numbered row.
func parseNDJSONLine(row int, line []byte) parsedRow {
	pr := parsedRow{row: row}
	if line[0] != '{' {
		pr.err = invalid("", "line must hold one JSON object")
		return pr
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var l ndjsonLine
	if err := dec.Decode(&l); err != nil {
		pr.err = lineError(err)
		return pr
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		pr.err = invalid("", "line must hold one JSON object")
		return pr
	}
	attrs, fe := decodeAttributes(l.Attributes)
	if fe != nil {
		pr.err = fe
		return pr
	}
	pr.in = Input{ExternalID: l.ExternalID, Email: l.Email, Name: l.Name, Locale: l.Locale,
		Timezone: l.Timezone, Attributes: attrs}
	return pr
}

// lineError turns a JSON decoding error into a row error naming the field when it can.
func lineError(err error) *fieldError {
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typ) && typ.Field != "":
		return invalid(typ.Field, "must be a string")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		if len(name) > 64 {
			return invalid("", "unknown field")
		}
		return invalid(name, "unknown field")
	}
	return invalid("", "line is not valid JSON")
}
