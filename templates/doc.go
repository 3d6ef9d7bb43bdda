// Package templates owns stored email templates: named, per workspace, with immutable numbered
// versions (saving a name again stores version max+1; nothing is ever updated in place), and
// their rendering for transactional messages and campaigns.
//
// # Parts and engines
//
// A template has three parts. The subject and the text part are text/template; the HTML part is
// html/template, so data is escaped for the context it lands in (element text, attribute, URL:
// a `javascript:` URL from data becomes `#ZgotmplZ`). Missing text is generated from the
// rendered HTML with html2text, links kept as "text <url>". Every part is parsed when a version
// is stored and again when it is compiled for rendering; a part that does not parse is refused
// with a *PartError naming it.
//
// Templates run with missingkey=error: a field the data lacks (a typo such as {{.frist_name}})
// fails the render with an error that names the part and the key, rather than sending "Hello ,".
// To print something optional, send the key with an empty value or null and use default.
//
// A rendered subject containing CR or LF is refused (ErrSubjectLineBreak): data must not be able
// to add mail headers. A subject template containing a line break is refused when stored.
//
// # Functions
//
//	default FALLBACK VALUE  VALUE, or FALLBACK when VALUE is empty (null, "", an empty list or
//	                        object); 0 and false are values. {{.name | default "there"}}
//	upper VALUE             VALUE as a string, upper-cased
//	lower VALUE             VALUE as a string, lower-cased
//	date LAYOUT VALUE       a time.Time, or an RFC 3339 or YYYY-MM-DD string, formatted with a Go
//	                        layout in its own offset: {{date "2 Jan 2006" .due}}; empty gives ""
//	unsubscribe_url         the recipient's unsubscribe link (one-click, and the preference centre)
//	preferences_url         the recipient's preference centre
//	view_online_url         the message on the web
//	postal_address          the sender's postal address, as text (lines become <br> in HTML)
//
// # Links: placeholders filled per recipient
//
// A campaign compiles one version once and renders it for every recipient, so the four link
// functions cannot be bound per render. They print fixed placeholders (PlaceholderUnsubscribe,
// PlaceholderPreferences and PlaceholderViewOnline, https URLs under the reserved .invalid TLD
// that escaping, sanitising and html2text keep intact, and PlaceholderPostalAddress), and
// Rendered.WithLinks replaces them with the recipient's values in one pass over each part,
// escaped for HTML there. A caller that renders without WithLinks (a transactional send today)
// leaves the placeholders in the message. Data that prints a placeholder gets it replaced too,
// which is harmless: the values are the recipient's own links and the sender's address, and the
// address placeholder, holding spaces, is percent-encoded in a URL attribute, so the address text
// never becomes a link. Write link functions as a whole attribute value: href="{{unsubscribe_url}}".
//
// # Contact data and the marketing rule
//
// ContactData gives a contact's fields as .contact (external_id, email, name, first_name, locale,
// timezone, attributes). Attributes vary between contacts and rendering uses missingkey=error,
// so an optional one is read with index: {{index .contact.attributes "plan" | default "free"}}.
//
// CheckMarketing refuses a marketing template unless its HTML part and its written text part each
// call unsubscribe_url (or preferences_url) and postal_address as bare actions at the top level,
// outside {{if}}, {{range}} and {{with}}, so that every recipient sees them whatever the data; in
// HTML the link must start an href value and the address must be element text.
//
// # Preview and test sends
//
// POST /v1/templates/{name}/preview renders a version with data, and with a contact's fields as
// .contact when "contact" names one (its external_id; another workspace's is not found). With
// "stream": "marketing" it checks the marketing rule and fills the links with preview values
// (BASE/u/preview, BASE/v/preview, and "postal_address" or a stand-in). POST .../test renders the
// same way, links filled, and sends one message to "to" (an address, not a contact) through a
// TestSender: the transactional path, subject prefixed "[Test] ", header X-Herald-Test: 1, and
// the transactional decision, which refuses a suppressed address. It needs campaigns:write.
//
// Data values are normalised before rendering: null prints as "" (not "<no value>") and JSON
// numbers print as written (1234567, not 1.234567e+06); use DecodeData for request bodies.
//
// # Sanitising: the rendered HTML, not the source
//
// Every rendered HTML part is passed through Sanitize (bluemonday's UGC policy widened for email
// layout: table attributes, bgcolor, font, center, class and checked inline styles). The stored
// source is kept as written, after it parses. Sanitising the source was tried and refused:
// bluemonday percent-encodes actions in URLs (href="{{.url}}" becomes href="%7B%7B.url%7D%7D")
// and escapes quotes inside actions ({{if eq .s "x"}} no longer parses); and it would not be
// sound anyway, since a template comment or false conditional can join two sanitised fragments
// into markup the sanitiser never saw. Sanitising the output is what makes the rendered HTML safe
// whatever the template and the data hold. <style> blocks are dropped; CSS inlining is a later
// issue.
//
// # Cost limits
//
// Each part is at most MaxPartBytes of source and MaxRenderedBytes of output. Templates may not
// define or call other templates ({{define}}, {{block}}, {{template}}), which could recurse
// exponentially, and {{range}} must walk a field of the data ({{range .items}},
// {{range $.items}}, {{range $order.lines}}), never a number or a function result, so a template
// cannot loop a billion times on its own. Loops nested over the caller's own data remain bounded
// only by that data's size.
package templates
