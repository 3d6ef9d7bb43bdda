package tracking

import (
	"strings"

	"herald/consent"
)

// VERP kinds: what the id of a bounce address names.
const (
	VERPRecipient = 1 // a campaign_recipients row id
	VERPMessage   = 2 // a messages.seq (transactional and single marketing messages)
)

// Bounce addresses are bounces+TOKEN@domain, TOKEN signed for this domain over (workspace, kind, id).
const (
	verpTokenDomain = "herald/bounce/v1"
	verpLocalPrefix = "bounces+"
)

// VERP makes and reads the envelope senders (Return-Path) of Herald's messages: a signed token
// naming the message, so that a bounce sent back to it says which message and recipient it is
// about, and a forged one is refused. The token carries ids only; the bounced address is read
// from the database row it names, never from the report.
type VERP struct {
	Keys *consent.Keys
	// Domain is the right-hand side of the bounce addresses (HERALD_BOUNCE_DOMAIN).
	Domain string
}

// BounceTarget is what a bounce address names.
type BounceTarget struct {
	WorkspaceID int64
	Kind        int // VERPRecipient or VERPMessage
	ID          int64
}

// Address returns the bounce address of a campaign recipient row or a message (kind and id).
func (v VERP) Address(workspaceID int64, kind int, id int64) string {
	return verpLocalPrefix + v.Keys.SignIDs(verpTokenDomain, workspaceID, int64(kind), id) + "@" + v.Domain
}

// RecipientAddress is the bounce address of a campaign recipient row, for
// campaigns.SendBatchWorker.ReturnPath.
func (v VERP) RecipientAddress(workspaceID, recipientID int64) string {
	return v.Address(workspaceID, VERPRecipient, recipientID)
}

// MessageAddress is the bounce address of a message by its seq, for mailer.SendWorker.ReturnPath.
func (v VERP) MessageAddress(workspaceID, seq int64) string {
	return v.Address(workspaceID, VERPMessage, seq)
}

// Parse reads a bounce address of v's domain (the domain and the prefix compared without case,
// as mail systems may fold it); ok is false for any other address, a forged or truncated token
// included.
func (v VERP) Parse(addr string) (BounceTarget, bool) {
	local, ok := v.localPart(addr)
	if !ok {
		return BounceTarget{}, false
	}
	ids, err := v.Keys.ParseIDs(verpTokenDomain, local[len(verpLocalPrefix):], 3)
	if err != nil || ids[0] == 0 || ids[2] == 0 || (ids[1] != VERPRecipient && ids[1] != VERPMessage) {
		return BounceTarget{}, false
	}
	return BounceTarget{WorkspaceID: ids[0], Kind: int(ids[1]), ID: ids[2]}, true
}

// localPart returns addr's local part when addr is a bounce address of v's domain by its form,
// before the token is checked.
func (v VERP) localPart(addr string) (string, bool) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || v.Domain == "" || !strings.EqualFold(addr[at+1:], v.Domain) {
		return "", false
	}
	local := addr[:at]
	if len(local) <= len(verpLocalPrefix) || !strings.EqualFold(local[:len(verpLocalPrefix)], verpLocalPrefix) {
		return "", false
	}
	return local, true
}
