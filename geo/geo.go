// Package geo maps client IP addresses to locations (country, continent,
// autonomous system, coordinates) for the LBS's geographic selection.
//
// It reads MaxMind-format databases (GeoLite2/GeoIP2 City or Country, ASN, and
// DB-IP's compatible files) with geoip2-golang, reloads them when the files
// change without stopping lookups (the reader is swapped atomically), applies
// operator CIDR overrides before the databases, and caches answers per prefix.
package geo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/logging"
)

// Location is what the LBS knows about a client address.
type Location struct {
	Country   string  `json:"country,omitempty"`   // ISO 3166-1 alpha-2, "" if unknown
	Continent string  `json:"continent,omitempty"` // two-letter code: AF AN AS EU NA OC SA
	ASN       uint32  `json:"asn,omitempty"`
	Lat       float64 `json:"lat"`
	Lon       float64 `json:"lon"`
	HasCoords bool    `json:"has_coords"`
	// Prefix is the network the answer holds for (the override's CIDR or the
	// database record's network).
	Prefix netip.Prefix `json:"prefix"`
	// Source says where the answer came from: "override", "db" or "none".
	Source string `json:"source"`
}

// Override pins a CIDR to a location, ahead of the databases: an IDC's private
// ranges, a carrier's block the databases get wrong.
type Override struct {
	CIDR      string  `yaml:"cidr"`
	Country   string  `yaml:"country"`
	Continent string  `yaml:"continent"`
	ASN       uint32  `yaml:"asn"`
	Lat       float64 `yaml:"lat"`
	Lon       float64 `yaml:"lon"`
}

// Config configures a Resolver.
type Config struct {
	// CityDB is a MaxMind-format City or Country database (GeoLite2-City,
	// DB-IP City Lite, or one built by tools/geodb). Empty: overrides only.
	CityDB string `yaml:"city_db"`
	// ASNDB is a MaxMind-format ASN database. Empty: no ASN data (unless the
	// City file is one that carries none anyway).
	ASNDB string `yaml:"asn_db"`
	// Overrides are consulted before the databases; the longest prefix wins.
	Overrides []Override `yaml:"overrides"`
	// ReloadInterval is how often the files' size and modification time are
	// checked. Zero means 5s; negative disables reloading.
	ReloadInterval config.Duration `yaml:"reload_interval"`
	// CacheSize is the number of prefix cache slots (rounded up to a power of
	// two). Zero means 65536; negative disables the cache.
	CacheSize int `yaml:"cache_size"`
}

// Default returns the defaults.
func Default() Config {
	return Config{ReloadInterval: config.Duration(5 * time.Second), CacheSize: 1 << 16}
}

// Validate checks the configuration and reports every problem.
func (c *Config) Validate() error {
	var errs config.Errors
	for i, o := range c.Overrides {
		if _, err := netip.ParsePrefix(o.CIDR); err != nil {
			errs.Addf("geo.overrides[%d].cidr: %v", i, err)
		}
		if o.Lat < -90 || o.Lat > 90 || o.Lon < -180 || o.Lon > 180 {
			errs.Addf("geo.overrides[%d]: lat/lon out of range", i)
		}
		if o.Continent != "" && !validContinent(o.Continent) {
			errs.Addf("geo.overrides[%d].continent: %q is not one of AF AN AS EU NA OC SA", i, o.Continent)
		}
	}
	if c.CacheSize > 1<<24 {
		errs.Addf("geo.cache_size: %d is too large (max 16777216)", c.CacheSize)
	}
	return errs.Err()
}

func validContinent(c string) bool {
	switch c {
	case "AF", "AN", "AS", "EU", "NA", "OC", "SA":
		return true
	}
	return false
}

// Deps are the Resolver's injected dependencies.
type Deps struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: metrics are not registered
}

type databases struct {
	city, asn           *geoip2.Reader
	cityStamp, asnStamp fileStamp
	gen                 uint64
}

type fileStamp struct {
	size int64
	mod  time.Time
}

type override struct {
	prefix netip.Prefix
	loc    Location
}

// Resolver answers lookups. It is safe for concurrent use.
type Resolver struct {
	cfg       Config
	log       *slog.Logger
	m         *metrics
	dbs       atomic.Pointer[databases]
	overrides []override // sorted longest prefix first
	cache     *prefixCache

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// New loads the databases and overrides. Reloading starts with Start.
func New(cfg Config, deps Deps) (*Resolver, error) {
	if cfg.ReloadInterval == 0 {
		cfg.ReloadInterval = Default().ReloadInterval
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = Default().CacheSize
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("geo: %w", err)
	}
	log := logging.OrDiscard(deps.Logger)
	r := &Resolver{cfg: cfg, log: log.With("component", "geo"), m: newMetrics(deps.Registerer), stop: make(chan struct{})}
	for _, o := range cfg.Overrides {
		p := netip.MustParsePrefix(o.CIDR).Masked()
		r.overrides = append(r.overrides, override{prefix: p, loc: Location{
			Country: o.Country, Continent: o.Continent, ASN: o.ASN, Lat: o.Lat, Lon: o.Lon,
			HasCoords: o.Lat != 0 || o.Lon != 0, Prefix: p, Source: "override",
		}})
	}
	sortOverrides(r.overrides)
	if cfg.CacheSize > 0 {
		r.cache = newPrefixCache(cfg.CacheSize)
	}
	dbs, err := r.load(nil)
	if err != nil {
		return nil, err
	}
	r.dbs.Store(dbs)
	return r, nil
}

func sortOverrides(o []override) {
	// insertion sort: overrides are few
	for i := 1; i < len(o); i++ {
		for j := i; j > 0 && o[j].prefix.Bits() > o[j-1].prefix.Bits(); j-- {
			o[j], o[j-1] = o[j-1], o[j]
		}
	}
}

func stamp(path string) (fileStamp, error) {
	st, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{size: st.Size(), mod: st.ModTime()}, nil
}

// open reads the whole file into memory so that a replaced reader can simply be
// dropped: no mapping is unmapped under a lookup in flight.
func open(path string) (*geoip2.Reader, fileStamp, error) {
	st, err := stamp(path)
	if err != nil {
		return nil, st, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, st, err
	}
	rd, err := geoip2.OpenBytes(b)
	if err != nil {
		return nil, st, fmt.Errorf("geo: open %s: %w", path, err)
	}
	return rd, st, nil
}

// load opens the configured files, reusing readers from prev whose files did
// not change. It returns prev itself when nothing changed.
func (r *Resolver) load(prev *databases) (*databases, error) {
	next := &databases{}
	if prev != nil {
		*next = *prev
	}
	changed := prev == nil
	if r.cfg.CityDB != "" {
		st, err := stamp(r.cfg.CityDB)
		if err != nil {
			return nil, fmt.Errorf("geo: city db: %w", err)
		}
		if prev == nil || st != prev.cityStamp {
			rd, st, err := open(r.cfg.CityDB)
			if err != nil {
				return nil, err
			}
			if _, err := rd.City(netip.MustParseAddr("127.0.0.1")); err != nil && errors.As(err, new(geoip2.InvalidMethodError)) {
				return nil, fmt.Errorf("geo: %s is not a City or Country database: %w", r.cfg.CityDB, err)
			}
			next.city, next.cityStamp, changed = rd, st, true
		}
	}
	if r.cfg.ASNDB != "" {
		st, err := stamp(r.cfg.ASNDB)
		if err != nil {
			return nil, fmt.Errorf("geo: asn db: %w", err)
		}
		if prev == nil || st != prev.asnStamp {
			rd, st, err := open(r.cfg.ASNDB)
			if err != nil {
				return nil, err
			}
			next.asn, next.asnStamp, changed = rd, st, true
		}
	}
	if !changed {
		return prev, nil
	}
	if prev != nil {
		next.gen = prev.gen + 1
	}
	return next, nil
}

// Reload checks the files now and swaps in new readers if they changed. A
// file that fails to load leaves the previous reader in service.
func (r *Resolver) Reload() error {
	prev := r.dbs.Load()
	next, err := r.load(prev)
	if err != nil {
		r.m.reloadErrors.Inc()
		return err
	}
	if next != prev {
		r.dbs.Store(next)
		r.m.reloads.Inc()
		r.log.Info("geo databases reloaded", "generation", next.gen)
	}
	return nil
}

// Start begins watching the files for changes.
func (r *Resolver) Start(context.Context) error {
	if r.cfg.ReloadInterval.D() <= 0 || (r.cfg.CityDB == "" && r.cfg.ASNDB == "") {
		return nil
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t := time.NewTicker(r.cfg.ReloadInterval.D())
		defer t.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-t.C:
				if err := r.Reload(); err != nil {
					r.log.Warn("geo reload failed; keeping the previous databases", "err", err)
				}
			}
		}
	}()
	return nil
}

// Shutdown stops the watcher.
func (r *Resolver) Shutdown(context.Context) error {
	r.once.Do(func() { close(r.stop) })
	r.wg.Wait()
	return nil
}

// Lookup returns the location of addr. It never fails: an unknown address
// gives a Location with Source "none".
func (r *Resolver) Lookup(addr netip.Addr) Location {
	addr = addr.Unmap()
	for i := range r.overrides {
		if r.overrides[i].prefix.Contains(addr) {
			r.m.fromOverride.Inc()
			return r.overrides[i].loc
		}
	}
	dbs := r.dbs.Load()
	if r.cache != nil {
		if loc, ok := r.cache.get(addr, dbs.gen); ok {
			r.m.fromCache.Inc()
			return loc
		}
	}
	loc := Location{Source: "none", Prefix: netip.PrefixFrom(addr, addr.BitLen())}
	if dbs.city != nil {
		if c, err := dbs.city.City(addr); err == nil && (c.Country.ISOCode != "" || c.Location.HasCoordinates()) {
			loc.Country = c.Country.ISOCode
			loc.Continent = c.Continent.Code
			if c.Location.HasCoordinates() {
				loc.Lat, loc.Lon, loc.HasCoords = *c.Location.Latitude, *c.Location.Longitude, true
			}
			loc.Source = "db"
			loc.Prefix = c.Traits.Network
		}
	}
	if dbs.asn != nil {
		if a, err := dbs.asn.ASN(addr); err == nil && a.AutonomousSystemNumber != 0 {
			loc.ASN = uint32(a.AutonomousSystemNumber)
			if loc.Source == "none" {
				loc.Source = "db"
				loc.Prefix = a.Network
			} else if a.Network.IsValid() && a.Network.Bits() > loc.Prefix.Bits() {
				// the answer only holds where both records do
				loc.Prefix = a.Network
			}
		}
	}
	if loc.Source == "db" {
		r.m.fromDB.Inc()
	} else {
		r.m.fromNone.Inc()
	}
	if r.cache != nil {
		r.cache.put(addr, loc, dbs.gen)
	}
	return loc
}

const earthRadiusKm = 6371.0088

// DistanceKm is the great-circle (haversine) distance between two points in
// degrees.
func DistanceKm(lat1, lon1, lat2, lon2 float64) float64 {
	const rad = math.Pi / 180
	dLat := (lat2 - lat1) * rad
	dLon := (lon2 - lon1) * rad
	a := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * earthRadiusKm * math.Asin(math.Min(1, math.Sqrt(a)))
}
