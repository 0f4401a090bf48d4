package auditsink

import "testing"

func TestCheckUniqueKeys(t *testing.T) {
	for in, ok := range map[string]bool{
		`{"a":1,"b":{"a":2,"c":[{"a":1},{"a":2}]},"c":[1,[2,{"x":null}]]}`: true,
		`{"a":{},"b":[],"c":""}`:    true,
		`[{"a":1},{"a":1}]`:         true,
		`{"a":1,"a":2}`:             false,
		`{"a":1,"b":{"x":1,"x":2}}`: false,
		`{"a":[{"x":1,"X":2}]}`:     false,
		`{"kid":1,"\u212aid":2}`:    false, // Kelvin sign folds to k
		`{"a":{"b":1},"a":3}`:       false,
		`{"a":1}{"a":2}`:            false,
		`{"a":1} 7`:                 false,
		`{"a":`:                     false,
	} {
		if err := checkUniqueKeys([]byte(in)); (err == nil) != ok {
			t.Errorf("checkUniqueKeys(%s) = %v, want ok=%v", in, err, ok)
		}
	}
}
