package contacts

import (
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
	recs *CSVRecords
	cols []csvColumn
}

func newCSVRows(r io.Reader) (*csvRows, error) {
	recs, header, err := NewCSVRecords(r, "external_id and email")
	if err != nil {
		return nil, fmt.Errorf("import contacts: %w", err)
	}
	cols, err := csvHeader(header)
	if err != nil {
		return nil, err
	}
	return &csvRows{recs: recs, cols: cols}, nil
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
	rec, err := c.recs.Next()
	if err != nil {
		return parsedRow{}, err
	}
	pr := parsedRow{row: rec.Row}
	if rec.Malformed != "" {
		pr.err = invalid("", rec.Malformed)
		return pr, nil
	}
	var attrs map[string]any
	for i, v := range rec.Fields {
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
