package contacts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/language"
)

// Field limits.
const (
	maxExternalID     = 255      // characters
	maxName           = 256      // characters
	maxLocale         = 35       // BCP 47 tags longer than this are not worth supporting
	maxTimezone       = 64       // longest IANA name is about 32
	maxAttrKeys       = 100      // top-level keys
	maxAttrBytes      = 64 << 10 // encoded JSON
	maxAttrKey        = 256      // characters in one key
	maxAttrRawBytes   = 1 << 20  // raw JSON accepted for decoding, before re-encoding
	defaultBodyBytes  = 1 << 20
	defaultImportSize = 512 << 20
)

// Input is what a client sends for one contact. Upsert validates and normalises it.
type Input struct {
	ExternalID string
	Email      string
	Name       string
	Locale     string
	Timezone   string
	// Attributes is a JSON object of the CRM's own fields; nil means {}.
	Attributes map[string]any
}

// fieldError is one invalid field; detail names the rule, never the value.
type fieldError struct {
	Field  string
	Detail string
}

func (e *fieldError) Error() string { return e.Field + ": " + e.Detail }

func invalid(field, detail string) *fieldError { return &fieldError{Field: field, Detail: detail} }

// normalized is a validated Input, ready to store.
type normalized struct {
	externalID, email, name, locale, timezone string
	attributes                                []byte // a compact JSON object
}

// normalize validates every field of in and returns its stored form, or the first invalid field.
func (in Input) normalize(zones zoneCache) (normalized, *fieldError) {
	var n normalized
	var fe *fieldError
	if fe = checkExternalID(in.ExternalID); fe != nil {
		return n, fe
	}
	n.externalID = in.ExternalID
	if in.Email == "" {
		return n, invalid("email", "is required")
	}
	email, err := NormalizeAddress(in.Email)
	if err != nil {
		return n, invalid("email", err.Error())
	}
	n.email = email
	if n.name, fe = normalizeName(in.Name); fe != nil {
		return n, fe
	}
	if n.locale, fe = normalizeLocale(in.Locale); fe != nil {
		return n, fe
	}
	if n.timezone, fe = checkTimezone(in.Timezone, zones); fe != nil {
		return n, fe
	}
	if n.attributes, fe = encodeAttributes(in.Attributes); fe != nil {
		return n, fe
	}
	return n, nil
}

// ValidExternalID reports whether id could be a contact's external id.
func ValidExternalID(id string) bool { return checkExternalID(id) == nil }

// checkExternalID accepts 1-255 printable characters without surrounding spaces.
func checkExternalID(id string) *fieldError {
	const field = "external_id"
	switch {
	case id == "":
		return invalid(field, "is required")
	case !utf8.ValidString(id):
		return invalid(field, "must be valid UTF-8")
	case utf8.RuneCountInString(id) > maxExternalID:
		return invalid(field, fmt.Sprintf("must be at most %d characters", maxExternalID))
	case strings.TrimSpace(id) != id:
		return invalid(field, "must not begin or end with white space")
	}
	for _, r := range id {
		if !unicode.IsPrint(r) {
			return invalid(field, "must hold printable characters only")
		}
	}
	return nil
}

// normalizeName trims a display name and refuses control characters (CR/LF would allow header
// injection when the name is put in a To: header) and names over 256 characters.
func normalizeName(s string) (string, *fieldError) {
	const field = "name"
	if !utf8.ValidString(s) {
		return "", invalid(field, "must be valid UTF-8")
	}
	s = strings.TrimSpace(s)
	if utf8.RuneCountInString(s) > maxName {
		return "", invalid(field, fmt.Sprintf("must be at most %d characters", maxName))
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return "", invalid(field, "must not contain control characters or line breaks")
		}
	}
	return s, nil
}

// normalizeLocale parses a BCP 47 language tag and returns its canonical form ("en_us" -> "en-US").
func normalizeLocale(s string) (string, *fieldError) {
	if s == "" {
		return "", nil
	}
	if len(s) > maxLocale {
		return "", invalid("locale", "is too long for a BCP 47 language tag")
	}
	tag, err := language.Parse(s)
	if err != nil {
		return "", invalid("locale", "must be a BCP 47 language tag such as en or pt-BR")
	}
	return tag.String(), nil
}

// zoneCache remembers IANA names that loaded, so a large import does not read tzdata per row. Each
// import has its own (nil: no caching).
type zoneCache map[string]bool

// checkTimezone accepts an IANA time zone name that time.LoadLocation knows, except "Local".
func checkTimezone(s string, zones zoneCache) (string, *fieldError) {
	if s == "" {
		return "", nil
	}
	if zones[s] {
		return s, nil
	}
	const detail = "must be an IANA time zone name such as Europe/Berlin"
	if s == "Local" || len(s) > maxTimezone || !utf8.ValidString(s) {
		return "", invalid("timezone", detail)
	}
	for _, r := range s {
		if r < 0x21 || r > 0x7e {
			return "", invalid("timezone", detail)
		}
	}
	if _, err := time.LoadLocation(s); err != nil {
		return "", invalid("timezone", detail)
	}
	if zones != nil {
		zones[s] = true
	}
	return s, nil
}

// decodeAttributes decodes a raw JSON attributes value: absent or null is an empty object, anything
// but an object is refused. Numbers stay json.Number so no precision is lost.
func decodeAttributes(raw []byte) (map[string]any, *fieldError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] != '{' {
		return nil, invalid("attributes", "must be a JSON object")
	}
	if len(raw) > maxAttrRawBytes {
		return nil, invalid("attributes", fmt.Sprintf("must be at most %d bytes of JSON", maxAttrBytes))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, invalid("attributes", "must be a valid JSON object")
	}
	return m, nil
}

// encodeAttributes checks the attribute limits and returns the compact JSON to store.
func encodeAttributes(m map[string]any) ([]byte, *fieldError) {
	const field = "attributes"
	if len(m) > maxAttrKeys {
		return nil, invalid(field, fmt.Sprintf("must have at most %d keys", maxAttrKeys))
	}
	for k := range m {
		if k == "" || utf8.RuneCountInString(k) > maxAttrKey || !printableKey(k) {
			return nil, invalid(field, fmt.Sprintf("keys must be 1-%d printable characters", maxAttrKey))
		}
	}
	if m == nil {
		return []byte("{}"), nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, invalid(field, "must be encodable as JSON")
	}
	if len(b) > maxAttrBytes {
		return nil, invalid(field, fmt.Sprintf("must be at most %d bytes of JSON", maxAttrBytes))
	}
	// PostgreSQL's jsonb refuses \u0000 and numbers beyond its range. A map decoded from JSON is
	// checked as it is; one holding other Go values is checked as it will be stored.
	ok, exact := storable(m)
	if !exact {
		var v any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			return nil, invalid(field, "must be a JSON object")
		}
		ok, _ = storable(v)
	}
	if !ok {
		return nil, invalid(field, "must not contain NUL characters or out-of-range numbers")
	}
	return b, nil
}

func printableKey(k string) bool {
	for _, r := range k {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return utf8.ValidString(k)
}

// storable reports whether jsonb accepts v: no NUL in strings or keys, numbers within float64
// range. exact is false when v holds values other than those encoding/json decodes into, which
// storable cannot judge before they are encoded.
func storable(v any) (ok, exact bool) {
	switch v := v.(type) {
	case nil, bool, float64:
		return true, true
	case string:
		return !strings.ContainsRune(v, 0), true
	case json.Number:
		_, err := strconv.ParseFloat(string(v), 64) // ErrRange beyond ±1.8e308
		return err == nil, true
	case []any:
		exact = true
		for _, e := range v {
			ok, ex := storable(e)
			if !ok {
				return false, true
			}
			exact = exact && ex
		}
		return true, exact
	case map[string]any:
		exact = true
		for k, e := range v {
			ok, ex := storable(e)
			if strings.ContainsRune(k, 0) || !ok {
				return false, true
			}
			exact = exact && ex
		}
		return true, exact
	}
	return true, false
}
