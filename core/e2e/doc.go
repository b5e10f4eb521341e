// Package e2e holds the end-to-end tests of the IM core: real TCP on
// loopback, the real gateway, bus, services and store, and the Go SDK.
package e2e
