package geo_test

import (
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/geo"
	"github.com/longlink/longlink/geo/mmdbbuild"
)

func buildWorld(t testing.TB, dir string) (city, asn string) {
	t.Helper()
	city, asn = filepath.Join(dir, "city.mmdb"), filepath.Join(dir, "asn.mmdb")
	if err := mmdbbuild.BuildFile("../tools/geodb/testdata/world.csv", city, asn); err != nil {
		t.Fatal(err)
	}
	return city, asn
}

func TestLookup(t *testing.T) {
	city, asn := buildWorld(t, t.TempDir())
	r, err := geo.New(geo.Config{CityDB: city, ASNDB: asn, Overrides: []geo.Override{
		{CIDR: "10.20.0.0/16", Country: "SG", Continent: "AS", Lat: 1.3, Lon: 103.8},
		{CIDR: "8.8.8.128/25", Country: "CA", Continent: "NA", ASN: 7, Lat: 45.5, Lon: -73.6},
	}}, geo.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		ip, country, continent string
		asn                    uint32
		source                 string
	}{
		{"8.8.8.8", "US", "NA", 15169, "db"},
		{"8.8.8.200", "CA", "NA", 7, "override"},
		{"1.1.1.1", "AU", "OC", 13335, "db"},
		{"9.9.9.9", "DE", "EU", 19281, "db"},
		{"::ffff:9.9.9.9", "DE", "EU", 19281, "db"},
		{"110.5.6.7", "CN", "AS", 4134, "db"},
		{"2001:db8:2::1", "SG", "AS", 64502, "db"},
		{"10.20.3.4", "SG", "AS", 0, "override"},
		{"192.0.2.1", "", "", 0, "none"},
	}
	for _, c := range cases {
		t.Run(c.ip, func(t *testing.T) {
			for range 2 { // second time from the cache
				l := r.Lookup(netip.MustParseAddr(c.ip))
				if l.Country != c.country || l.Continent != c.continent || l.ASN != c.asn || l.Source != c.source {
					t.Fatalf("Lookup(%s) = %+v", c.ip, l)
				}
			}
		})
	}
	l := r.Lookup(netip.MustParseAddr("1.1.1.1"))
	if !l.HasCoords || math.Abs(l.Lat+33.87) > 0.01 {
		t.Fatalf("coords: %+v", l)
	}
}

// TestCacheDoesNotWiden: a record narrower than the cache key must not be
// served for neighbours in the same /24.
func TestCacheDoesNotWiden(t *testing.T) {
	dir := t.TempDir()
	csv := "network,country,continent,latitude,longitude,asn,as_org\n" +
		"198.51.100.0/25,FR,EU,48.85,2.35,1,a\n198.51.100.128/25,JP,AS,35.68,139.69,2,b\n"
	p := filepath.Join(dir, "w.csv")
	os.WriteFile(p, []byte(csv), 0o644)
	if err := mmdbbuild.BuildFile(p, filepath.Join(dir, "c.mmdb"), ""); err != nil {
		t.Fatal(err)
	}
	r, err := geo.New(geo.Config{CityDB: filepath.Join(dir, "c.mmdb")}, geo.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Lookup(netip.MustParseAddr("198.51.100.1")).Country; got != "FR" {
		t.Fatal(got)
	}
	if got := r.Lookup(netip.MustParseAddr("198.51.100.200")).Country; got != "JP" {
		t.Fatal(got)
	}
}

// TestHotReload swaps the database file while lookups run; none may fail and
// the new data must show up.
func TestHotReload(t *testing.T) {
	dir := t.TempDir()
	city, _ := buildWorld(t, dir)
	r, err := geo.New(geo.Config{CityDB: city}, geo.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var bad atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if c := r.Lookup(netip.MustParseAddr("9.9.9.9")).Country; c != "DE" && c != "FR" {
					bad.Add(1)
				}
			}
		}()
	}
	src, _ := os.ReadFile("../tools/geodb/testdata/world.csv")
	p := filepath.Join(dir, "w2.csv")
	os.WriteFile(p, []byte(strings.Replace(string(src), "9.9.9.0/24,DE,EU", "9.9.9.0/24,FR,EU", 1)), 0o644)
	time.Sleep(20 * time.Millisecond)
	if err := mmdbbuild.BuildFile(p, city, ""); err != nil {
		t.Fatal(err)
	}
	// make sure the stamp differs even on coarse mtime filesystems
	os.Chtimes(city, time.Now().Add(time.Second), time.Now().Add(time.Second))
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d bad answers during reload", bad.Load())
	}
	if c := r.Lookup(netip.MustParseAddr("9.9.9.9")).Country; c != "FR" {
		t.Fatalf("after reload: %s", c)
	}
	// a broken file keeps the old database in service
	os.WriteFile(city, []byte("garbage"), 0o644)
	if err := r.Reload(); err == nil {
		t.Fatal("reload of garbage succeeded")
	}
	if c := r.Lookup(netip.MustParseAddr("9.9.9.9")).Country; c != "FR" {
		t.Fatalf("after failed reload: %s", c)
	}
}

func TestDistance(t *testing.T) {
	// London to Paris is about 344 km
	d := geo.DistanceKm(51.5074, -0.1278, 48.8566, 2.3522)
	if d < 330 || d > 355 {
		t.Fatal(d)
	}
	if geo.DistanceKm(1, 2, 1, 2) != 0 {
		t.Fatal("non-zero self distance")
	}
}

func TestValidate(t *testing.T) {
	c := geo.Config{Overrides: []geo.Override{{CIDR: "nope"}, {CIDR: "10.0.0.0/8", Lat: 100, Continent: "XX"}}}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "cidr") || !strings.Contains(err.Error(), "lat/lon") || !strings.Contains(err.Error(), "continent") {
		t.Fatalf("Validate: %v", err)
	}
}

func BenchmarkLookupCached(b *testing.B) {
	city, asn := buildWorld(b, b.TempDir())
	r, _ := geo.New(geo.Config{CityDB: city, ASNDB: asn}, geo.Deps{})
	a := netip.MustParseAddr("8.8.8.8")
	r.Lookup(a)
	b.ReportAllocs()
	for b.Loop() {
		r.Lookup(a)
	}
}
