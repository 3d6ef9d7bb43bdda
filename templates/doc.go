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
//	view_online_url         the web version of the recipient's own copy (campaign mail:
//	                        BASE/v/TOKEN; single sends: the preference centre)
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
// # Sanitising: once per version, proved against the per-render sanitiser
//
// Every rendered HTML part is as Sanitize (bluemonday's UGC policy widened for email layout:
// table attributes, bgcolor, font, center, class and checked inline styles) would leave it. The
// stored source is kept as written, after it parses. The obvious way, sanitising every rendered
// message, costs most of a render (63% of ~1 ms for a 10 KB newsletter, and html2text of the
// result another 18%), and a campaign renders one version for every recipient. Sanitising the
// source as written does not work either: bluemonday percent-encodes actions in URLs and escapes
// quotes inside them, and a comment or false conditional can join two fragments into markup the
// sanitiser never saw (<scr{{/* */}}ipt>).
//
// So Compile sanitises the static text once, in the context the renders will see it in. Each
// action becomes an inert token (lower-case letters, kept by bluemonday in text and in any
// attribute taking a word, a valid relative URL); comments are dropped, joining their neighbours
// as the parser does; the text is the text html/template itself emits (it rewrites a "<" that
// starts no tag, and drops HTML comments). The tokenised HTML is sanitised, and the fast path
// is taken only if: every token survives exactly once, in order; each is where it was (element
// text, or the value of the same attribute of the same element), at most one per attribute
// value, control actions ({{if}}, {{else}}, {{end}}, {{range}}, {{with}}) only in text; and at
// every control action sanitising is compositional: each stretch between control actions
// sanitises alone to its stretch of the whole, and leaves the sanitiser in its initial state
// (a probe of an allowed element and the end tag of every element the stretch started comes out
// unchanged, so no dropped start tag is waiting to drop a later end tag). The actions are then
// put back into the sanitised text, which is parsed as the html/template that renders: its
// static text must come out of html/template's escaper unchanged, and each action must be
// escaped as in the template as written but for the last HTML-escaping step.
//
// Why that is sound: html/template requires every branch to end in the context it started in,
// and the checks above make each stretch of static text sanitise the same whichever branches
// run or however often a loop repeats, so any output is a sequence of sanitised stretches and
// values. The values are the only per-render part, and each is checked where it lands: in text,
// html/template's escaping is respelled as x/net/html spells it ("+" for "&#43;", LF for CR);
// in an attribute, the value is put into its sanitised start tag, which must come out of
// Sanitize unchanged (the last value per action is remembered, so link functions are checked
// once). A value that fails (markup from a template.HTML, a URL net/url rejects, a colour or
// width the policy's pattern refuses, a title with quotes) stops the fast render, and that
// message takes the per-render path. The tests hold the fast output to be a fixed point of
// Sanitize and byte-identical to the per-render path, for a table of hostile templates and
// values and under fuzzing; nothing is allowed to differ but the output limit, which applies
// to the sanitised HTML rather than to html/template's output before sanitising.
//
// Templates that fail a check are sanitised at every render, as before; Compiled.Presanitized
// tells which. Among them: an action in a style attribute or <style>, in a width or other
// numeric attribute, two actions in one attribute value, a control action inside a tag, and a
// branch that opens an element the sanitiser drops and closes it after the branch.
//
// The generated text part takes the same route for templates without control actions: html2text
// of the tokenised, sanitised HTML, with the actions put back as text/template actions printing
// what html2text would make of their HTML output (the value, white space collapsed; in an href,
// the URL as html/template filters and percent-encodes it). A value that is empty or starts or
// ends with white space (html2text would merge it with its neighbours), or an href that
// html2text would treat differently (holding "javascript:" or "href"), falls back to html2text
// of that message's HTML. With control actions the text part is always html2text of the
// rendered HTML: html2text carries state across pieces of text (whether a paragraph break is
// due, whether a space was just written), so a branch printing nothing changes the text around
// it.
//
// <style> blocks are dropped; CSS inlining is a later issue.
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
