package main

import "time"

// The Web SDK's bundle size (gzip), the budget `make test` checks: the
// browser bundle WebLink serves (socket.io-client inside) and the SDK's own
// code as a bundler adds it to an app that has socket.io-client already.
func init() {
	register(benchmark{
		name:    "websdk-size",
		summary: "Web SDK bundle sizes, gzip: core/sdk/web browser bundle and the SDK alone, against the budget",
		limit:   3 * time.Minute,
		argv:    []string{"sh", "-c", "cd core/sdk/web && npm run --silent build && npm run --silent size"},
	})
}
