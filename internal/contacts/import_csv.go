package contacts

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"herald/internal/httpx"
)

// csvColumn is what one CSV column holds: a contact field, or (field "") the attribute key.
type csvColumn struct {
	field string
	key   string
}

// knownColumns are the CSV header names read as contact fields; any other column is an attribute.
var knownColumns = []string{"external_id", "email", "name", "locale", "timezone", "attributes"}

// csvRows reads a CSV upload whose header names its columns. A record that cannot be parsed (a
// stray quote, the wrong number of fields) is reported as an invalid row and reading goes on.
type csvRows struct {
	cr     *csv.Reader
	cols   []csvColumn
	record int   // records read, the header being 1
	start  int64 // input offset where the current record starts
}

func newCSVRows(r io.Reader) (*csvRows, error) {
	c := &csvRows{}
	c.cr = csv.NewReader(&recordLimitReader{r: r, rows: c})
	c.cr.ReuseRecord = true
	header, err := c.cr.Read()
	var pe *csv.ParseError
	switch {
	case errors.Is(err, io.EOF):
		return nil, httpx.NewProblem(http.StatusUnprocessableEntity, "the CSV upload is empty: a header row naming external_id and email is required")
	case errors.As(err, &pe):
		return nil, httpx.NewProblem(http.StatusUnprocessableEntity, "the CSV header row is malformed: "+pe.Err.Error())
	case err != nil:
		return nil, fmt.Errorf("import contacts: read CSV header: %w", err)
	}
	c.record = 1
	c.start = c.cr.InputOffset()
	if c.cols, err = csvHeader(header); err != nil {
		return nil, err
	}
	return c, nil
}

// csvHeader maps header names to columns, refusing headers without external_id and email,
// repeated names and unusable attribute names.
func csvHeader(header []string) ([]csvColumn, error) {
	bad := func(detail string) error {
		return httpx.NewProblem(http.StatusUnprocessableEntity, "the CSV header row "+detail)
	}
	cols := make([]csvColumn, len(header))
	seen := map[string]bool{}
	attrs := 0
	for i, h := range header {
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff") // a byte order mark, as spreadsheets write
		}
		h = strings.TrimSpace(h)
		if !utf8.ValidString(h) || h == "" || utf8.RuneCountInString(h) > maxAttrKey || !printableKey(h) {
			return nil, bad(fmt.Sprintf("has an empty or unusable name in column %d", i+1))
		}
		name := h
		if lower := strings.ToLower(h); slices.Contains(knownColumns, lower) {
			name = lower
			cols[i] = csvColumn{field: lower}
		} else {
			cols[i] = csvColumn{key: h}
			attrs++
		}
		if seen[name] {
			return nil, bad(fmt.Sprintf("names column %d twice", i+1))
		}
		seen[name] = true
	}
	if !seen["external_id"] || !seen["email"] {
		return nil, bad("must name the columns external_id and email")
	}
	if attrs > maxAttrKeys {
		return nil, bad(fmt.Sprintf("has more than %d attribute columns", maxAttrKeys))
	}
	return cols, nil
}

func (c *csvRows) next() (parsedRow, error) {
	rec, err := c.cr.Read()
	c.start = c.cr.InputOffset()
	if errors.Is(err, io.EOF) {
		return parsedRow{}, io.EOF
	}
	c.record++
	pr := parsedRow{row: c.record}
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		pr.err = invalid("", "malformed CSV record: "+pe.Err.Error())
		return pr, nil
	}
	if err != nil {
		return parsedRow{}, err
	}
	var attrs map[string]any
	for i, v := range rec {
		col := c.cols[i]
		if !utf8.ValidString(v) {
			name := col.field
			if name == "" {
				name = "attributes"
			}
			pr.err = invalid(name, "must be valid UTF-8")
			return pr, nil
		}
		switch col.field {
		case "external_id":
			pr.in.ExternalID = v
		case "email":
			pr.in.Email = v
		case "name":
			pr.in.Name = v
		case "locale":
			pr.in.Locale = v
		case "timezone":
			pr.in.Timezone = v
		case "attributes":
			m, fe := decodeAttributes([]byte(v))
			if fe != nil {
				pr.err = fe
				return pr, nil
			}
			if m != nil {
				for k, val := range attrs { // attribute columns win over the JSON column
					m[k] = val
				}
				attrs = m
			}
		default:
			if v == "" {
				continue // an empty cell sets no attribute
			}
			if attrs == nil {
				attrs = map[string]any{}
			}
			attrs[col.key] = v
		}
	}
	pr.in.Attributes = attrs
	return pr, nil
}

// recordLimitReader fails the upload when one CSV record grows beyond maxRowBytes, so a file with
// no line ends (or an unclosed quote) cannot make the CSV reader buffer it whole.
type recordLimitReader struct {
	r    io.Reader
	n    int64
	rows *csvRows
}

// errRowTooLarge is a fatal import error.
var errRowTooLarge = httpx.NewProblem(http.StatusUnprocessableEntity,
	fmt.Sprintf("a CSV record exceeds %d bytes (an unclosed quote?)", maxRowBytes))

func (l *recordLimitReader) Read(p []byte) (int, error) {
	// The CSV reader buffers 4 KiB ahead of the record it is parsing.
	if l.n-l.rows.start > maxRowBytes+8<<10 {
		return 0, errRowTooLarge
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	return n, err
}
