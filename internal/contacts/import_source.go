package contacts

import (
	"errors"
	"fmt"
	"io"
)

// parsedRow is one data row of an upload: its number and either the client's input or the reason
// it could not be parsed.
type parsedRow struct {
	row int
	in  Input
	err *fieldError
}

// rowReader yields the rows of an upload. next returns io.EOF at the end; any other error is fatal
// to the import.
type rowReader interface {
	next() (parsedRow, error)
}

func newRowReader(format Format, r io.Reader) (rowReader, error) {
	switch format {
	case FormatCSV:
		return newCSVRows(r)
	case FormatNDJSON:
		return newNDJSONRows(r), nil
	}
	return nil, fmt.Errorf("import contacts: unknown format %q", format)
}

// rowSource feeds pgx's COPY: it pulls rows from the parser one at a time, validates each, reports
// the invalid ones and hands on the valid ones. pgx calls it from one goroutine of its own; the
// caller reads err and report only after CopyFrom returns.
type rowSource struct {
	rows   rowReader
	report *ImportReport
	values []any
	err    error     // fatal: the import must not be applied
	zones  zoneCache // time zones already checked in this import
}

func (s *rowSource) Next() bool {
	for {
		pr, err := s.rows.next()
		if errors.Is(err, io.EOF) {
			return false
		}
		if err != nil {
			s.err = fmt.Errorf("import contacts: read upload: %w", err)
			return false
		}
		s.report.Received++
		if pr.err != nil {
			s.report.addError(pr.row, pr.err)
			continue
		}
		n, fe := pr.in.normalize(s.zones)
		if fe != nil {
			s.report.addError(pr.row, fe)
			continue
		}
		s.values = append(s.values[:0], int32(pr.row), n.externalID, n.email, n.name, n.locale, n.timezone, n.attributes)
		return true
	}
}

func (s *rowSource) Values() ([]any, error) { return s.values, nil }

func (s *rowSource) Err() error { return s.err }
