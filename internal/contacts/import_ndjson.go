package contacts

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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

// ndjsonRows reads one JSON object per line. Blank lines are skipped but still numbered; a line
// over maxRowBytes is reported and skipped without being buffered.
type ndjsonRows struct {
	br   *bufio.Reader
	line int
	buf  []byte
}

func newNDJSONRows(r io.Reader) *ndjsonRows {
	return &ndjsonRows{br: bufio.NewReaderSize(r, 64<<10)}
}

func (n *ndjsonRows) next() (parsedRow, error) {
	for {
		line, tooLong, err := n.readLine()
		if err != nil {
			return parsedRow{}, err
		}
		n.line++
		if tooLong {
			return parsedRow{row: n.line, err: invalid("", fmt.Sprintf("line exceeds %d bytes", maxRowBytes))}, nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		return n.parse(line), nil
	}
}

// readLine returns the next line without its newline; io.EOF only when no bytes are left.
func (n *ndjsonRows) readLine() (line []byte, tooLong bool, err error) {
	n.buf = n.buf[:0]
	for {
		chunk, err := n.br.ReadSlice('\n')
		if !tooLong {
			if len(n.buf)+len(chunk) > maxRowBytes+1 {
				tooLong = true
				n.buf = n.buf[:0]
			} else {
				n.buf = append(n.buf, chunk...)
			}
		}
		switch {
		case err == nil:
			return bytes.TrimSuffix(n.buf, []byte("\n")), tooLong, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(n.buf) == 0 && !tooLong {
				return nil, false, io.EOF
			}
			return n.buf, tooLong, nil
		default:
			return nil, false, err
		}
	}
}

func (n *ndjsonRows) parse(line []byte) parsedRow {
	pr := parsedRow{row: n.line}
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
