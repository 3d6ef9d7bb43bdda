package templates

import (
	"strings"

	"herald/internal/contacts"
)

// ContactData is what templates see of a contact, under the data key "contact":
//
//	.contact.external_id   the CRM's id
//	.contact.email         the normalised address
//	.contact.name          the full name, "" when unknown
//	.contact.first_name    the first word of the name, "" when unknown
//	.contact.locale        e.g. "en-GB", "" when unknown
//	.contact.timezone      an IANA zone such as "Europe/Paris", "" when unknown
//	.contact.attributes.KEY  the CRM's attributes, normalised as DecodeData leaves them (numbers
//	                       as written, null as "")
//
// Attributes differ from contact to contact, and templates run with missingkey=error: write
// {{index .contact.attributes "plan" | default "free"}} for one a contact may lack.
func ContactData(c contacts.Contact) map[string]any {
	first := ""
	if f := strings.Fields(c.Name); len(f) > 0 {
		first = f[0]
	}
	return map[string]any{
		"external_id": c.ExternalID,
		"email":       c.Email,
		"name":        c.Name,
		"first_name":  first,
		"locale":      c.Locale,
		"timezone":    c.Timezone,
		"attributes":  normalizeMap(c.Attributes),
	}
}
