package lbsapi

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"regexp"

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/semver"
)

// Grayscale in the request path. Service nodes carry a version label; a
// rule of the policy's `grayscale:` list sends the requests of the users it
// chooses to the nodes of its version. The LBS hands the rules to every
// gateway with each heartbeat reply (so a change reaches them within a
// heartbeat or two, and removing a rule is the rollback), and the gateways
// and the LBS's explain decide with the same Grayscale.Match below.
//
// A rule applies to a user when every filter it sets holds (appkeys: the
// user's app is listed; sdk: the session's SDK version is in the range) and
// the rule chooses the user: the account is listed in accounts, or it falls
// in the percentage. Rules are tried in order and the first one that
// applies wins; a user no rule chooses goes to the cluster's stable nodes.
//
// The percentage is a stable hash: bucket = the first 8 bytes of
// SHA-256(rule name, 0, appkey, 0, account) as a big-endian integer modulo
// 10,000, chosen when bucket < percent × 100. Raising the percentage keeps
// the users chosen before; renaming the rule chooses a different set.

// GrayscaleRule sends chosen users' requests to service nodes of Version.
type GrayscaleRule struct {
	// Name is unique in the policy (a lower-case DNS label); it salts the
	// percentage hash.
	Name string `yaml:"name" json:"name"`
	// Version is the service nodes' version label (their service.version).
	Version string `yaml:"version" json:"version"`
	// AppKeys, when set, limit the rule to these apps.
	AppKeys []string `yaml:"appkeys,omitempty" json:"appkeys,omitempty"`
	// SDK, when set, limits the rule to sessions whose SDK version is in
	// the range (">=5.2.0 <5.3.0 || =6.0.0"); a session without a version
	// never matches it.
	SDK string `yaml:"sdk,omitempty" json:"sdk,omitempty"`
	// Accounts are chosen whatever the percentage.
	Accounts []string `yaml:"accounts,omitempty" json:"accounts,omitempty"`
	// Percent of the users (0.01 steps) chosen by the stable hash; 100
	// chooses every user that passes the filters.
	Percent float64 `yaml:"percent,omitempty" json:"percent,omitempty"`
}

// Grayscale is the rule list as a heartbeat reply carries it.
type Grayscale struct {
	// PolicyVersion is the LBS policy version the rules come from.
	PolicyVersion uint64          `json:"policy_version"`
	Rules         []GrayscaleRule `json:"rules"`
}

// MaxGrayscaleAccounts bounds one rule's account list.
const MaxGrayscaleAccounts = 10000

var versionLabelRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,30}[A-Za-z0-9])?$`)

// ValidVersionLabel reports whether s can label service nodes: 1-32 of
// A-Z a-z 0-9 . - starting and ending with a letter or digit ("1.5.0",
// "canary-2"). Labels never hold '_', so VersionToken is one-to-one.
func ValidVersionLabel(s string) bool { return versionLabelRE.MatchString(s) }

var siteRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidSite reports whether s can name a site (a data centre): a lower-case
// DNS label, as the policy's entry point sites are. Core nodes, edges and
// NATS servers carry the same names, so that one word means one place
// everywhere (policy, heartbeats, metrics, explain).
func ValidSite(s string) bool { return siteRE.MatchString(s) }

// VersionToken is a version label as one NATS subject token ('.' → '_').
func VersionToken(label string) string {
	b := []byte(label)
	for i, c := range b {
		if c == '.' {
			b[i] = '_'
		}
	}
	return string(b)
}

var grayNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidateGrayscale checks rules and reports every problem; knownApp, when
// set, must accept every appkey a rule names.
func ValidateGrayscale(rules []GrayscaleRule, knownApp func(string) bool) error {
	var errs config.Errors
	names := map[string]bool{}
	for i, r := range rules {
		p := fmt.Sprintf("grayscale[%d]", i)
		if r.Name != "" {
			p = fmt.Sprintf("grayscale[%d] (%s)", i, r.Name)
		}
		if !grayNameRE.MatchString(r.Name) {
			errs.Addf("%s.name: %q is not a lower-case DNS label", p, r.Name)
		} else if names[r.Name] {
			errs.Addf("%s.name: duplicate %q", p, r.Name)
		}
		names[r.Name] = true
		if !ValidVersionLabel(r.Version) {
			errs.Addf("%s.version: %q: want 1-32 of A-Z a-z 0-9 . - (a service node's service.version)", p, r.Version)
		}
		for _, a := range r.AppKeys {
			if knownApp != nil && !knownApp(a) {
				errs.Addf("%s.appkeys: unknown appkey %q", p, a)
			}
		}
		if r.SDK != "" {
			if _, err := semver.ParseRange(r.SDK); err != nil {
				errs.Addf("%s.sdk: %v", p, err)
			}
		}
		switch {
		case math.IsNaN(r.Percent) || r.Percent < 0 || r.Percent > 100:
			errs.Addf("%s.percent: %v not in 0..100", p, r.Percent)
		case math.Abs(r.Percent*100-math.Round(r.Percent*100)) > 1e-6:
			errs.Addf("%s.percent: %v: at most two decimals (0.01%% steps)", p, r.Percent)
		}
		if len(r.Accounts) == 0 && r.Percent == 0 {
			errs.Addf("%s: chooses nobody: set accounts, percent, or both (percent: 100 for every user the filters pass)", p)
		}
		if len(r.Accounts) > MaxGrayscaleAccounts {
			errs.Addf("%s.accounts: %d listed, at most %d", p, len(r.Accounts), MaxGrayscaleAccounts)
		}
		for _, a := range r.Accounts {
			if !validAccount(a) {
				errs.Addf("%s.accounts: %q: want 1-128 of A-Z a-z 0-9 _ - @ + =", p, a)
				break
			}
		}
	}
	return errs.Err()
}

func validAccount(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '@' || c == '+' || c == '=') {
			return false
		}
	}
	return true
}

// GrayscaleRouter is a compiled rule list; safe for concurrent use.
type GrayscaleRouter struct {
	policyVersion uint64
	rules         []grayRule
}

type grayRule struct {
	GrayscaleRule
	appkeys  map[string]bool
	accounts map[string]bool
	sdk      *semver.Range
	buckets  uint64 // chosen when bucket < buckets
}

// CompileGrayscale validates g's rules and compiles them.
func CompileGrayscale(g Grayscale) (*GrayscaleRouter, error) {
	if err := ValidateGrayscale(g.Rules, nil); err != nil {
		return nil, err
	}
	out := &GrayscaleRouter{policyVersion: g.PolicyVersion}
	for _, r := range g.Rules {
		cr := grayRule{GrayscaleRule: r, buckets: uint64(math.Round(r.Percent * 100))}
		if len(r.AppKeys) > 0 {
			cr.appkeys = make(map[string]bool, len(r.AppKeys))
			for _, a := range r.AppKeys {
				cr.appkeys[a] = true
			}
		}
		if len(r.Accounts) > 0 {
			cr.accounts = make(map[string]bool, len(r.Accounts))
			for _, a := range r.Accounts {
				cr.accounts[a] = true
			}
		}
		if r.SDK != "" {
			rg, _ := semver.ParseRange(r.SDK) // validated above
			cr.sdk = &rg
		}
		out.rules = append(out.rules, cr)
	}
	return out, nil
}

// PolicyVersion is the policy version the rules came from.
func (g *GrayscaleRouter) PolicyVersion() uint64 {
	if g == nil {
		return 0
	}
	return g.policyVersion
}

// Len is the number of rules.
func (g *GrayscaleRouter) Len() int {
	if g == nil {
		return 0
	}
	return len(g.rules)
}

// GrayscaleMatch is the rule that chose a user and why.
type GrayscaleMatch struct {
	Rule    string `json:"rule"`
	Version string `json:"version"`
	// Why: "account listed", "in the 10% (bucket 734)", "every user".
	Why string `json:"why"`
}

// Match returns the first rule that applies to the user, if any. sdk is
// the session's SDK version ("" or malformed: rules with an sdk range do
// not apply). A nil router matches nothing.
func (g *GrayscaleRouter) Match(appkey, account, sdk string) (GrayscaleMatch, bool) {
	m, _, ok := g.match(appkey, account, sdk, false)
	return m, ok
}

// Explain is Match with the reason each earlier rule did not apply.
func (g *GrayscaleRouter) Explain(appkey, account, sdk string) (GrayscaleMatch, []string, bool) {
	return g.match(appkey, account, sdk, true)
}

func (g *GrayscaleRouter) match(appkey, account, sdk string, explain bool) (GrayscaleMatch, []string, bool) {
	if g == nil || len(g.rules) == 0 {
		return GrayscaleMatch{}, nil, false
	}
	var ver *semver.Version
	if sdk != "" {
		if v, err := semver.ParseVersion(sdk); err == nil {
			ver = &v
		}
	}
	var skipped []string
	for i := range g.rules {
		r := &g.rules[i]
		why, ok := r.applies(appkey, account, ver)
		if ok {
			return GrayscaleMatch{Rule: r.Name, Version: r.Version, Why: why}, skipped, true
		}
		if explain {
			skipped = append(skipped, "rule "+r.Name+": "+why)
		}
	}
	return GrayscaleMatch{}, skipped, false
}

// MatchApp returns the rule that moves a whole app: its server API
// requests (which act for the app, not for one user) follow a rule that
// names the appkey, has no sdk range and chooses every user (percent 100).
func (g *GrayscaleRouter) MatchApp(appkey string) (GrayscaleMatch, bool) {
	if g == nil {
		return GrayscaleMatch{}, false
	}
	for i := range g.rules {
		r := &g.rules[i]
		if r.appkeys[appkey] && r.sdk == nil && r.buckets == 10000 {
			return GrayscaleMatch{Rule: r.Name, Version: r.Version, Why: "the whole app"}, true
		}
	}
	return GrayscaleMatch{}, false
}

// applies reports whether the rule chooses the user, with the reason (of
// the choice, or of the first filter that failed).
func (r *grayRule) applies(appkey, account string, ver *semver.Version) (string, bool) {
	switch {
	case r.appkeys != nil && !r.appkeys[appkey]:
		return "appkey not in rule", false
	case r.sdk != nil && ver == nil:
		return "no usable SDK version; rule needs " + r.SDK, false
	case r.sdk != nil && !r.sdk.Contains(*ver):
		return "SDK " + ver.String() + " not in " + r.SDK, false
	case r.accounts[account]:
		return "account listed", true
	case r.buckets == 10000:
		return "every user", true
	}
	b := GrayscaleBucket(r.Name, appkey, account)
	pct := fmt.Sprintf("%v%%", float64(r.buckets)/100)
	if b < r.buckets {
		return fmt.Sprintf("in the %s (bucket %d)", pct, b), true
	}
	if r.buckets == 0 {
		return "account not listed", false
	}
	return fmt.Sprintf("not listed and outside the %s (bucket %d)", pct, b), false
}

// GrayscaleBucket is the user's stable bucket (0..9999) under a rule.
func GrayscaleBucket(rule, appkey, account string) uint64 {
	h := sha256.New()
	h.Write([]byte(rule))
	h.Write([]byte{0})
	h.Write([]byte(appkey))
	h.Write([]byte{0})
	h.Write([]byte(account))
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0])[:8]) % 10000
}
