package mmdbbuild

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func TestDemoWorldMatchesTestdata(t *testing.T) {
	b, err := os.ReadFile("../../tools/geodb/testdata/world.csv")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, DemoWorld) {
		t.Fatal("demo_world.csv and tools/geodb/testdata/world.csv differ: keep them the same")
	}
}

func TestParseCSVErrors(t *testing.T) {
	for _, bad := range []string{
		"network,country,continent,latitude,longitude,asn,as_org\n10.0.0.0/33,US,NA,1,2,3,x\n",
		"10.0.0.0/8,US,NA,100,2,3,x\n",
		"10.0.0.0/8,US,NA,1,2,ASx,x\n",
		"10.0.0.0/8,US\n",
	} {
		if _, err := ParseCSV(strings.NewReader(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	recs, err := ParseCSV(bytes.NewReader(DemoWorld))
	if err != nil || len(recs) < 10 {
		t.Fatalf("demo world: %d records, %v", len(recs), err)
	}
}
