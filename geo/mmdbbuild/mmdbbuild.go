// Package mmdbbuild writes MaxMind-format databases (a City database and an
// ASN database) from a CSV of prefixes and locations. tools/geodb is its
// command line; tests build their databases with it.
//
// The CSV has a header line and these columns (blank lines and lines starting
// with '#' are skipped):
//
//	network,country,continent,latitude,longitude,asn,as_org
//	203.0.113.0/24,SG,AS,1.29,103.85,64500,Example Carrier
//
// Empty latitude/longitude leave the record without coordinates; an empty or
// zero asn leaves the network out of the ASN database.
package mmdbbuild

import (
	_ "embed"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// Record is one CSV row.
type Record struct {
	Network   string
	Country   string
	Continent string
	Lat, Lon  *float64
	ASN       uint32
	ASOrg     string
}

var header = []string{"network", "country", "continent", "latitude", "longitude", "asn", "as_org"}

// ParseCSV reads records, reporting the line of the first bad one.
func ParseCSV(r io.Reader) ([]Record, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	var out []Record
	first := true
	for {
		row, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("csv: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if first {
			first = false
			if len(row) > 0 && strings.EqualFold(strings.TrimSpace(row[0]), header[0]) {
				continue
			}
		}
		if len(row) != len(header) {
			return nil, fmt.Errorf("csv line %d: %d fields, want %d (%s)", line, len(row), len(header), strings.Join(header, ","))
		}
		rec := Record{Network: strings.TrimSpace(row[0]), Country: strings.ToUpper(strings.TrimSpace(row[1])),
			Continent: strings.ToUpper(strings.TrimSpace(row[2])), ASOrg: strings.TrimSpace(row[6])}
		if _, _, err := net.ParseCIDR(rec.Network); err != nil {
			return nil, fmt.Errorf("csv line %d: network: %w", line, err)
		}
		if la, lo := strings.TrimSpace(row[3]), strings.TrimSpace(row[4]); la != "" || lo != "" {
			lat, err1 := strconv.ParseFloat(la, 64)
			lon, err2 := strconv.ParseFloat(lo, 64)
			if err1 != nil || err2 != nil || lat < -90 || lat > 90 || lon < -180 || lon > 180 {
				return nil, fmt.Errorf("csv line %d: bad latitude/longitude %q,%q", line, la, lo)
			}
			rec.Lat, rec.Lon = &lat, &lon
		}
		if a := strings.TrimSpace(row[5]); a != "" {
			n, err := strconv.ParseUint(strings.TrimPrefix(strings.ToUpper(a), "AS"), 10, 32)
			if err != nil {
				return nil, fmt.Errorf("csv line %d: asn: %w", line, err)
			}
			rec.ASN = uint32(n)
		}
		out = append(out, rec)
	}
}

// Build writes the City database to cityPath and, if asnPath is not empty,
// the ASN database to asnPath.
func Build(records []Record, cityPath, asnPath string) error {
	city, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoLite2-City", IncludeReservedNetworks: true,
		Description: map[string]string{"en": "Longlink geo database built by tools/geodb"}, RecordSize: 28})
	if err != nil {
		return err
	}
	asn, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoLite2-ASN", IncludeReservedNetworks: true,
		Description: map[string]string{"en": "Longlink ASN database built by tools/geodb"}, RecordSize: 28})
	if err != nil {
		return err
	}
	for _, r := range records {
		_, n, err := net.ParseCIDR(r.Network)
		if err != nil {
			return fmt.Errorf("mmdbbuild: %s: %w", r.Network, err)
		}
		rec := mmdbtype.Map{}
		if r.Country != "" {
			rec["country"] = mmdbtype.Map{"iso_code": mmdbtype.String(r.Country)}
		}
		if r.Continent != "" {
			rec["continent"] = mmdbtype.Map{"code": mmdbtype.String(r.Continent)}
		}
		if r.Lat != nil {
			rec["location"] = mmdbtype.Map{"latitude": mmdbtype.Float64(*r.Lat), "longitude": mmdbtype.Float64(*r.Lon)}
		}
		if err := city.Insert(n, rec); err != nil {
			return fmt.Errorf("mmdbbuild: city %s: %w", r.Network, err)
		}
		if r.ASN != 0 {
			if err := asn.Insert(n, mmdbtype.Map{
				"autonomous_system_number":       mmdbtype.Uint32(r.ASN),
				"autonomous_system_organization": mmdbtype.String(r.ASOrg),
			}); err != nil {
				return fmt.Errorf("mmdbbuild: asn %s: %w", r.Network, err)
			}
		}
	}
	if err := write(city, cityPath); err != nil {
		return err
	}
	if asnPath != "" {
		return write(asn, asnPath)
	}
	return nil
}

// write replaces path atomically (temp file + rename) so a reloading reader
// never sees half a file.
func write(t *mmdbwriter.Tree, path string) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := t.WriteTo(f); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("mmdbbuild: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// BuildFile reads a CSV file and writes the databases.
func BuildFile(csvPath, cityPath, asnPath string) error {
	f, err := os.Open(csvPath)
	if err != nil {
		return err
	}
	defer f.Close()
	recs, err := ParseCSV(f)
	if err != nil {
		return fmt.Errorf("%s: %w", csvPath, err)
	}
	return Build(recs, cityPath, asnPath)
}

// DemoWorld is a small demonstration CSV (documentation and well-known
// prefixes mapped to a few regions; not real geolocation data), the same as
// tools/geodb/testdata/world.csv. `longlink dev` builds its databases from it.
//
//go:embed demo_world.csv
var DemoWorld []byte
