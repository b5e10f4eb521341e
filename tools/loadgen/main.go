// Command loadgen measures the IM core from outside: it starts a core
// server process (`longlink core`, optionally pinned to a CPU with taskset),
// seeds its users directly into the store before the start, and drives it
// with Link clients from other processes.
//
//	loadgen idle     -bin longlink [-levels 5000,10000,19000 -baseline]   RSS per idle authenticated connection (beside bare echo servers)
//	loadgen messages -bin longlink [-rate 1000,5000,10000 -baseline]   durable 1:1 messages through the SDK (a sweep), beside the bare path
//	loadgen room     -bin longlink [-members 45000 -stages 5000,45000 -rate 100 -baseline]   chatroom fan-out over several gateway processes (a sweep of room sizes), beside a plain TCP fan-out
//	loadgen storm    -bin longlink [-clients 19000]   SDK clients logging in again after the core is killed and restarted
//	loadgen supergroup -bin longlink [-members 100000 -online 5000]   send → last online member's push
//	loadgen sdk-clients -key-id K -public-key P -app-key A   SDK clients read from stdin for another benchmark (core/e2e), reporting their state changes
//
// Both print progress while they run and end with lines
// `RESULT <figure> <value> <unit>` (see tools/bench).
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: loadgen idle|messages|room|supergroup [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "idle":
		err = runIdle(os.Args[2:])
	case "idle-worker":
		err = runIdleWorker(os.Args[2:])
	case "idle-echo-server":
		err = runEchoServer(os.Args[2:])
	case "messages":
		err = runMessages(os.Args[2:])
	case "bare-messages-server":
		err = runBareServer(os.Args[2:])
	case "room":
		err = runRoom(os.Args[2:])
	case "room-worker":
		err = runRoomWorker(os.Args[2:])
	case "room-bare-server":
		err = runBareFanout(os.Args[2:])
	case "storm":
		err = runStorm(os.Args[2:])
	case "storm-worker":
		err = runStormWorker(os.Args[2:])
	case "supergroup":
		err = runSuperGroup(os.Args[2:])
	case "supergroup-worker":
		err = runSuperWorker(os.Args[2:])
	case "sdk-clients":
		err = runSDKClients(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stdout, "# "+format+"\n", args...)
}

func result(figure string, value float64, unit string) {
	fmt.Fprintf(os.Stdout, "RESULT %s %.6g %s\n", figure, value, unit)
}
