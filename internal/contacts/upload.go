package contacts

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"

	"herald/internal/httpx"
)

// Limits of an uploaded import, shared by every import that reads uploads with the readers below
// (contacts here, list members in campaigns).
const (
	// MaxRowBytes limits one NDJSON line or CSV record.
	MaxRowBytes = 1 << 20
	// MaxImportRows limits the rows of one upload; the reader fails on the next one.
	MaxImportRows = 1_000_000
	// MaxImportErrors limits the row errors an import report lists.
	MaxImportErrors = 1000
)

// Fatal upload errors.
var (
	errRowTooLarge = httpx.NewProblem(http.StatusUnprocessableEntity,
		fmt.Sprintf("a CSV record exceeds %d bytes (an unclosed quote?)", MaxRowBytes))
	errTooManyRows = httpx.NewProblem(http.StatusRequestEntityTooLarge,
		fmt.Sprintf("an import holds at most %d rows: split the file", MaxImportRows))
)

// UploadFormat picks an upload's format from its Content-Type: text/csv, or
// application/x-ndjson (also application/ndjson, application/jsonl). Another type, a charset other
// than UTF-8 or a Content-Encoding (compression) is a 415 problem.
func UploadFormat(r *http.Request) (Format, error) {
	const want = "Content-Type must be text/csv or application/x-ndjson (UTF-8, not compressed)"
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return "", httpx.NewProblem(http.StatusUnsupportedMediaType, want)
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return "", httpx.NewProblem(http.StatusUnsupportedMediaType, want)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return "", httpx.NewProblem(http.StatusUnsupportedMediaType, want)
	}
	switch mt {
	case "text/csv":
		return FormatCSV, nil
	case "application/x-ndjson", "application/ndjson", "application/jsonl":
		return FormatNDJSON, nil
	}
	return "", httpx.NewProblem(http.StatusUnsupportedMediaType, want)
}

// CSVRecords reads a CSV upload one record at a time, numbering records as a spreadsheet shows
// them (the header is record 1). A record that cannot be parsed (a stray quote, by default the
// wrong number of fields) is returned as malformed and reading goes on; a record over MaxRowBytes
// and a record past MaxImportRows are fatal.
type CSVRecords struct {
	cr     *csv.Reader
	record int   // records read, the header being 1
	start  int64 // input offset where the current record starts
}

// CSVRecord is one data record: its number and its fields (reused by the next call), or why it
// could not be parsed.
type CSVRecord struct {
	Row       int
	Fields    []string
	Malformed string
}

// NewCSVRecords reads the header row of a CSV upload and returns it. An empty upload or a
// malformed header is a 422 problem; required names the columns the header must name, for the
// problem's detail.
func NewCSVRecords(r io.Reader, required string) (*CSVRecords, []string, error) {
	c := &CSVRecords{}
	c.cr = csv.NewReader(&recordLimitReader{r: r, recs: c})
	c.cr.ReuseRecord = true
	header, err := c.cr.Read()
	var pe *csv.ParseError
	switch {
	case errors.Is(err, io.EOF):
		return nil, nil, httpx.NewProblem(http.StatusUnprocessableEntity,
			"the CSV upload is empty: a header row naming "+required+" is required")
	case errors.As(err, &pe):
		return nil, nil, httpx.NewProblem(http.StatusUnprocessableEntity, "the CSV header row is malformed: "+pe.Err.Error())
	case errors.Is(err, errRowTooLarge):
		return nil, nil, errRowTooLarge
	case err != nil:
		return nil, nil, fmt.Errorf("read CSV header: %w", err)
	}
	c.record = 1
	c.start = c.cr.InputOffset()
	return c, slices.Clone(header), nil
}

// AnyFieldCount lets records hold any number of fields; by default a record must hold as many as
// the header or it is malformed.
func (c *CSVRecords) AnyFieldCount() { c.cr.FieldsPerRecord = -1 }

// Next returns the next data record; io.EOF at the end. Any other error is fatal to the import.
func (c *CSVRecords) Next() (CSVRecord, error) {
	rec, err := c.cr.Read()
	c.start = c.cr.InputOffset()
	if errors.Is(err, io.EOF) {
		return CSVRecord{}, io.EOF
	}
	c.record++
	var pe *csv.ParseError
	switch {
	case err != nil && !errors.As(err, &pe):
		return CSVRecord{}, err
	case c.record-1 > MaxImportRows:
		return CSVRecord{}, errTooManyRows
	case pe != nil:
		return CSVRecord{Row: c.record, Malformed: "malformed CSV record: " + pe.Err.Error()}, nil
	}
	return CSVRecord{Row: c.record, Fields: rec}, nil
}

// recordLimitReader fails the upload when one CSV record grows beyond MaxRowBytes, so a file with
// no line ends (or an unclosed quote) cannot make the CSV reader buffer it whole.
type recordLimitReader struct {
	r    io.Reader
	n    int64
	recs *CSVRecords
}

func (l *recordLimitReader) Read(p []byte) (int, error) {
	// The CSV reader buffers 4 KiB ahead of the record it is parsing.
	if l.n-l.recs.start > MaxRowBytes+8<<10 {
		return 0, errRowTooLarge
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	return n, err
}

// NDJSONLines reads an NDJSON upload one line at a time, numbering lines from 1. Blank lines are
// skipped but still numbered; a line over MaxRowBytes is returned as malformed without being
// buffered; a line past MaxImportRows is fatal.
type NDJSONLines struct {
	br   *bufio.Reader
	line int // lines read
	rows int // lines returned
	buf  []byte
}

// NDJSONLine is one non-blank line: its number and its bytes without surrounding white space
// (reused by the next call), or why it could not be read.
type NDJSONLine struct {
	Row       int
	Line      []byte
	Malformed string
}

// NewNDJSONLines returns a reader of the lines of r.
func NewNDJSONLines(r io.Reader) *NDJSONLines {
	return &NDJSONLines{br: bufio.NewReaderSize(r, 64<<10)}
}

// Next returns the next non-blank line; io.EOF at the end. Any other error is fatal to the import.
func (n *NDJSONLines) Next() (NDJSONLine, error) {
	for {
		line, tooLong, err := n.readLine()
		if err != nil {
			return NDJSONLine{}, err
		}
		n.line++
		line = bytes.TrimSpace(line)
		if !tooLong && len(line) == 0 {
			continue
		}
		if n.rows++; n.rows > MaxImportRows {
			return NDJSONLine{}, errTooManyRows
		}
		if tooLong {
			return NDJSONLine{Row: n.line, Malformed: fmt.Sprintf("line exceeds %d bytes", MaxRowBytes)}, nil
		}
		return NDJSONLine{Row: n.line, Line: line}, nil
	}
}

// readLine returns the next line without its newline; io.EOF only when no bytes are left.
func (n *NDJSONLines) readLine() (line []byte, tooLong bool, err error) {
	n.buf = n.buf[:0]
	for {
		chunk, err := n.br.ReadSlice('\n')
		if !tooLong {
			if len(n.buf)+len(chunk) > MaxRowBytes+1 {
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
