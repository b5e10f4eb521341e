package main

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
)

// devPortBase is the first port of the block `longlink dev` listens in by
// default: 7700..7799 (docs/ports.md).
const devPortBase = 7700

// devPortRe finds a loopback host:port in that block, alone or inside a URL
// ("http://127.0.0.1:7711", "turn:127.0.0.1:7730?transport=udp").
var devPortRe = regexp.MustCompile(`(127\.0\.0\.1|localhost|\[::1\]):(77\d\d)\b`)

// shiftDevPorts moves every loopback address of dev's block in dc to the
// block starting at base, keeping each listener's place in it (7720 becomes
// base+20): two `longlink dev` (tests running in parallel) side by side.
func shiftDevPorts(dc *devConfig, base int) error {
	if err := checkPortBase(base); err != nil || base == devPortBase {
		return err
	}
	shift := func(s string) string {
		return devPortRe.ReplaceAllStringFunc(s, func(m string) string {
			sub := devPortRe.FindStringSubmatch(m)
			p, _ := strconv.Atoi(sub[2])
			return sub[1] + ":" + strconv.Itoa(p-devPortBase+base)
		})
	}
	shiftValue(reflect.ValueOf(dc).Elem(), shift)
	return nil
}

// shiftValue rewrites, with f, every settable string reachable from v:
// fields, slices, map values and pointers (unexported fields such as a
// secret's value are left alone).
func shiftValue(v reflect.Value, f func(string) string) {
	switch v.Kind() {
	case reflect.String:
		if v.CanSet() {
			v.SetString(f(v.String()))
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			shiftValue(v.Elem(), f)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				shiftValue(v.Field(i), f)
			}
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			shiftValue(v.Index(i), f)
		}
	case reflect.Map:
		if v.IsNil() {
			return
		}
		for _, k := range v.MapKeys() {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(v.MapIndex(k))
			shiftValue(e, f)
			v.SetMapIndex(k, e)
		}
	}
}

func checkPortBase(base int) error {
	if base < 1024 || base+99 > 65535 {
		return fmt.Errorf("-port-base: %d is not in 1024..65436 (dev needs the 100 ports from it)", base)
	}
	return nil
}
