package imapi

import "strings"

// Conversation ids. A 1:1 conversation is named by its two accounts in
// sorted order, so both sides compute the same id without asking the server;
// a group conversation by its group id. Accounts and group ids never contain
// ':' (they are subject-safe), so the ids are unambiguous.

// P2PConvID is the id of the 1:1 conversation between accounts a and b.
func P2PConvID(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return "p:" + a + ":" + b
}

// GroupConvID is the id of a group's conversation.
func GroupConvID(groupID string) string { return "g:" + groupID }

// ParseConvID splits a conversation id into its type and parts: for ConvP2P
// the two accounts, for ConvGroup and ConvSuper the group id (b is empty). ok is false for
// anything else.
func ParseConvID(id string) (convType int, a, b string, ok bool) {
	switch {
	case strings.HasPrefix(id, "p:"):
		rest := id[2:]
		i := strings.IndexByte(rest, ':')
		if i <= 0 || i == len(rest)-1 || strings.IndexByte(rest[i+1:], ':') >= 0 {
			return 0, "", "", false
		}
		a, b = rest[:i], rest[i+1:]
		if b < a {
			return 0, "", "", false
		}
		return ConvP2P, a, b, true
	case strings.HasPrefix(id, "g:"):
		g := id[2:]
		if g == "" || strings.IndexByte(g, ':') >= 0 {
			return 0, "", "", false
		}
		return ConvGroup, g, "", true
	case strings.HasPrefix(id, "s:"):
		g := id[2:]
		if g == "" || strings.IndexByte(g, ':') >= 0 {
			return 0, "", "", false
		}
		return ConvSuper, g, "", true
	}
	return 0, "", "", false
}
