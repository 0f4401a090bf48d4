package api

import (
	"reflect"
	"strings"
	"testing"
)

// TestStrictJSONMapsKeepKeyCase: a map's keys are kept as written by
// encoding/json, so keys differing in case are two keys, not a duplicate;
// the same key twice still is one. A struct's member names are matched
// without case, so there two spellings collide.
func TestStrictJSONMapsKeepKeyCase(t *testing.T) {
	type body struct {
		Details map[string]string `json:"details"`
		Name    string            `json:"name"`
	}
	typ := reflect.TypeOf(&body{})
	for raw, want := range map[string]string{
		`{"details":{"a":"1","A":"2"}}`:   "",
		`{"details":{"a":"1","a":"2"}}`:   `"details.a" is given twice`,
		`{"name":"x","Name":"y"}`:         `given twice (as "name" and "Name")`,
		`{"details":{},"name":"x"} `:      "",
		`{"details":{"k":{"x":1,"x":2}}}`: `"details.k.x" is given twice`,
	} {
		err := checkStrictJSON([]byte(raw), typ)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", raw, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: %v, want %q", raw, err, want)
		}
	}
	// Each struct type is reflected on once.
	a, b := jsonFields(reflect.TypeOf(body{})), jsonFields(reflect.TypeOf(body{}))
	if reflect.ValueOf(a).Pointer() != reflect.ValueOf(b).Pointer() {
		t.Error("jsonFields rebuilt the fields of a type it has seen")
	}
}
