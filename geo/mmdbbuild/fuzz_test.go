package mmdbbuild

import (
	"bytes"
	_ "embed"
	"net"
	"strings"
	"testing"
)

//go:embed demo_world.csv
var demoCSV []byte

// The CSV comes from operators, not the network, but a bad file must get an
// error, never a crash or a record the builder would then refuse.
func FuzzParseCSV(f *testing.F) {
	f.Add(demoCSV)
	f.Add([]byte("network,country,continent,latitude,longitude,asn,as_org\n1.2.3.0/24,SG,AS,1.3,103.8,AS4134,X\n"))
	f.Add([]byte("1.2.3.0/24,SG,AS,,,,\n::/0,,,,,,\n"))
	f.Add([]byte("1.2.3.0/24,SG,AS,91,0,,\n"))
	f.Add([]byte("\"unterminated\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := ParseCSV(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, r := range recs {
			if _, _, err := net.ParseCIDR(r.Network); err != nil {
				t.Fatalf("accepted network %q: %v", r.Network, err)
			}
			if (r.Lat == nil) != (r.Lon == nil) {
				t.Fatalf("record %+v has half a location", r)
			}
			if r.Lat != nil && (*r.Lat < -90 || *r.Lat > 90 || *r.Lon < -180 || *r.Lon > 180) {
				t.Fatalf("record %+v out of range", r)
			}
			if r.Country != strings.ToUpper(r.Country) {
				t.Fatalf("country %q not upper case", r.Country)
			}
		}
	})
}
