package config

import (
	"reflect"
	"slices"
	"strings"
)

// DiffKeys lists the YAML key paths whose values differ between a and b
// (two values of one config type), descending into structs; a changed
// list, map or secret is named as a whole ("turn.secrets").
func DiffKeys(a, b any) []string {
	return diffKeys("", reflect.ValueOf(a), reflect.ValueOf(b))
}

func diffKeys(prefix string, a, b reflect.Value) []string {
	if reflect.DeepEqual(a.Interface(), b.Interface()) {
		return nil
	}
	if a.Kind() == reflect.Pointer && !a.IsNil() && !b.IsNil() {
		return diffKeys(prefix, a.Elem(), b.Elem())
	}
	if a.Kind() != reflect.Struct || hasUnexported(a.Type()) {
		return []string{prefix} // a value (a secret, a list) changed as a whole
	}
	var out []string
	for i := 0; i < a.NumField(); i++ {
		f := a.Type().Field(i)
		tag, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "-" {
			continue
		}
		name := tag
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if opts == "inline" { // its keys sit in the parent's
			name = prefix
		} else if prefix != "" {
			name = prefix + "." + name
		}
		out = append(out, diffKeys(name, a.Field(i), b.Field(i))...)
	}
	return out
}

func hasUnexported(t reflect.Type) bool {
	for i := 0; i < t.NumField(); i++ {
		if !t.Field(i).IsExported() {
			return true
		}
	}
	return false
}

// KeyUnder reports whether key is one of keys or lies inside one
// ("turn.secrets" is under "turn", "apps[2]" under "apps").
func KeyUnder(key string, keys []string) bool {
	for _, r := range keys {
		if key == r || strings.HasPrefix(key, r+".") || strings.HasPrefix(key, r+"[") {
			return true
		}
	}
	return false
}

// ReloadPlan compares the running config cur with next (both validated, of
// one type): it returns the changed keys that are under reloadable, sorted,
// or, when any other key changed, an error naming every such key (a reload
// applies all of a file or none of it).
func ReloadPlan(cur, next any, reloadable []string) ([]string, error) {
	var apply []string
	var errs Errors
	for _, k := range DiffKeys(cur, next) {
		if KeyUnder(k, reloadable) {
			apply = append(apply, k)
		} else {
			errs.Addf("%s: changed, and applies only at start: restart to change it", k)
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	slices.Sort(apply)
	return apply, nil
}
