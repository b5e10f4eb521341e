//go:build !unix

package gateway

// openFileLimit is not known here: max_connections is taken as it is.
func openFileLimit() (int, bool) { return 0, false }
