package main

import (
	"context"
	"flag"

	"github.com/longlink/longlink/core/weblink"
	"github.com/longlink/longlink/pkg/lifecycle"
)

func init() {
	register(command{name: "weblink-testsuite",
		summary: "serve WebLink's Socket.IO protocol (/socket.io/) and Engine.IO echo (/engine.io/) as the published protocol test suites' reference servers expect (conformance checks)",
		run:     runWebLinkTestSuite})
}

// runWebLinkTestSuite serves the protocol with the test suite's reference
// behaviour; WebLink itself runs inside the core (`longlink core`, `longlink dev`).
func runWebLinkTestSuite(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("weblink-testsuite", flag.ContinueOnError)
	var cf commonFlags
	cf.bind(fs)
	listen := fs.String("listen", "127.0.0.1:3000", "address (the test suite expects localhost:3000)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := cf.logger("weblink-testsuite")
	if err != nil {
		return err
	}
	g := lifecycle.NewGroup(log)
	g.Add("weblink-testsuite", weblink.NewTestSuiteServer(*listen, log))
	return serve(ctx, log, g, cf.shutdown, nil)
}
