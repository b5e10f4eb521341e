// Command geodb builds MaxMind-format City and ASN databases from a CSV of
// prefixes and locations, for tests, demos and operators' private ranges.
//
//	go run ./tools/geodb -csv tools/geodb/testdata/world.csv -city city.mmdb -asn asn.mmdb
//
// The CSV format is described in geo/mmdbbuild.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/longlink/longlink/geo/mmdbbuild"
)

func main() {
	csvPath := flag.String("csv", "", "input CSV (network,country,continent,latitude,longitude,asn,as_org)")
	city := flag.String("city", "city.mmdb", "output City database")
	asn := flag.String("asn", "", "output ASN database (optional)")
	flag.Parse()
	if *csvPath == "" {
		fmt.Fprintln(os.Stderr, "geodb: -csv is required")
		flag.Usage()
		os.Exit(2)
	}
	if err := mmdbbuild.BuildFile(*csvPath, *city, *asn); err != nil {
		fmt.Fprintln(os.Stderr, "geodb:", err)
		os.Exit(1)
	}
}
