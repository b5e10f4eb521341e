package imapi

// SystemAccount is the sender of system notifications sent through the
// server API. It cannot be a user account ('@' is not allowed in accounts),
// so nobody can log in as it.
const SystemAccount = "@system"

// ValidName reports whether s is a subject-safe name: 1-64 characters of
// A-Z a-z 0-9 _ -. Appkeys, accounts, group and room ids and cluster names
// use it, so they can be NATS subject tokens and parts of conversation ids.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
