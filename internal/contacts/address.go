package contacts

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Address limits from RFC 5321 §4.5.3.1 (octets).
const (
	maxLocalPart = 64
	maxAddress   = 254
)

// ErrInvalidAddress matches (errors.Is) every error NormalizeAddress returns.
var ErrInvalidAddress = errors.New("invalid email address")

// addressError is one broken rule. Its text names the rule, never the address, so it can be
// logged and sent back to the client as it is.
type addressError string

func (e addressError) Error() string        { return string(e) }
func (e addressError) Is(target error) bool { return target == ErrInvalidAddress }

const (
	errAddressEmpty       addressError = "is empty"
	errAddressDisplayName addressError = "must be a bare address, without a display name or angle brackets"
	errAddressControl     addressError = "must not contain control characters, line breaks or spaces"
	errAddressAt          addressError = "must contain exactly one @"
	errAddressLocal       addressError = "has an invalid local part (before the @)"
	errAddressQuoted      addressError = "quoted local parts are not accepted"
	errAddressLocalLength addressError = "local part (before the @) exceeds 64 octets"
	errAddressDomain      addressError = "has an invalid domain (after the @)"
	errAddressNoDot       addressError = "domain must contain a dot"
	errAddressLength      addressError = "exceeds 254 octets"
)

// idnaProfile maps a domain for lookup (UTS #46 non-transitional: lower-casing, width folding),
// checks STD3 host-name rules, hyphens, joiners, the bidi rule and DNS lengths, and converts
// non-ASCII labels to punycode.
var idnaProfile = idna.New(
	idna.MapForLookup(),
	idna.Transitional(false),
	idna.BidiRule(),
	idna.CheckHyphens(true),
	idna.CheckJoiners(true),
	idna.VerifyDNSLength(true),
)

// NormalizeAddress validates one email address and returns its canonical form.
//
// It trims surrounding spaces and tabs (not line breaks) and then accepts only a bare addr-spec: display names, angle
// brackets, quoted local parts, comments, IP-literal domains, control characters (CR, LF, NUL…)
// and inner white space are rejected, which also rules out header injection. The local part keeps
// its case (RFC 5321 leaves it to the receiving host) and is limited to 64 octets; it may hold
// RFC 5322 atext and, per RFC 6531 (SMTPUTF8), non-ASCII letters, marks, digits, punctuation and
// symbols, stored as given (not case-folded, not NFC-normalised). The domain is mapped and
// lower-cased per UTS #46, converted to ASCII (punycode) and must have at least two LDH labels
// with a non-numeric top-level label. The whole address is limited to 254 octets.
//
// The result re-normalises to itself.
func NormalizeAddress(s string) (string, error) {
	s = strings.Trim(s, " \t")
	if s == "" {
		return "", errAddressEmpty
	}
	if !utf8.ValidString(s) {
		return "", errAddressControl
	}
	if strings.ContainsAny(s, "<>") {
		return "", errAddressDisplayName
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) ||
			r == '\u2028' || r == '\u2029' {
			return "", errAddressControl
		}
	}
	if strings.Contains(s, `"`) {
		return "", errAddressQuoted
	}
	if len(s) > 4*maxAddress {
		return "", errAddressLength
	}
	local, domain, ok := strings.Cut(s, "@")
	if !ok || strings.Contains(domain, "@") {
		return "", errAddressAt
	}
	if err := checkLocal(local); err != nil {
		return "", err
	}
	ascii, err := normalizeDomain(domain)
	if err != nil {
		return "", err
	}
	out := local + "@" + ascii
	if len(out) > maxAddress {
		return "", errAddressLength
	}
	return out, nil
}

// checkLocal checks a dot-atom local part: atoms of atext (or non-ASCII graphic runes) separated by
// single dots, no leading or trailing dot.
func checkLocal(local string) error {
	if local == "" {
		return errAddressLocal
	}
	if len(local) > maxLocalPart {
		return errAddressLocalLength
	}
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return errAddressLocal
	}
	for _, r := range local {
		if r == '.' || isAtext(r) {
			continue
		}
		if r >= utf8.RuneSelf && unicode.IsGraphic(r) && !unicode.IsSpace(r) {
			continue
		}
		return errAddressLocal
	}
	return nil
}

// isAtext reports whether r is RFC 5322 atext in ASCII.
func isAtext(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return true
	}
	return r < utf8.RuneSelf && strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r)
}

// normalizeDomain maps and converts domain to lower-case ASCII and checks every label.
func normalizeDomain(domain string) (string, error) {
	if domain == "" || strings.HasPrefix(domain, "[") {
		return "", errAddressDomain
	}
	ascii, err := idnaProfile.ToASCII(domain)
	if err != nil {
		return "", errAddressDomain
	}
	ascii = strings.ToLower(ascii)
	labels := strings.Split(ascii, ".")
	if len(labels) < 2 {
		return "", errAddressNoDot
	}
	for _, l := range labels {
		if !isLDHLabel(l) {
			return "", errAddressDomain
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return "", errAddressDomain // an all-numeric TLD: an IP address, not a domain
	}
	return ascii, nil
}

// isLDHLabel reports whether l is a DNS host label: 1-63 letters, digits and inner hyphens.
func isLDHLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
