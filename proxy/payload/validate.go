package payload

import (
	"bytes"
	"cmp"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// The proxy checks a request body (scope, rules, masking, audit) and then
// forwards it; the upstream parses the same bytes again with its own JSON
// decoder. Where two decoders can read one text differently, the upstream
// could act on a value pamctl never checked: Go's encoding/json matches
// object keys to struct fields case-insensitively ("Model" fills Model),
// decoders disagree on which of two duplicate keys wins, and invalid UTF-8
// or a lone UTF-16 surrogate is replaced by one decoder and kept or refused
// by another. Validate refuses every such text, so what pamctl reads is what
// any conforming decoder reads.

// ErrAmbiguousJSON is matched (errors.Is) by every *AmbiguityError.
var ErrAmbiguousJSON = errors.New("payload: ambiguous JSON")

// maxValidateDepth is encoding/json's nesting limit.
const maxValidateDepth = 10000

// AmbiguityError says where and why a body is ambiguous. Its message names
// object keys only when they are short identifiers, so it never echoes
// prompt text or secrets.
type AmbiguityError struct {
	Path    string // e.g. messages[1].content, "" for the whole body
	Problem string
}

func (e *AmbiguityError) Error() string {
	if e.Path == "" {
		return "payload: ambiguous JSON: " + e.Problem
	}
	return "payload: ambiguous JSON at " + e.Path + ": " + e.Problem
}

// Is makes errors.Is(err, ErrAmbiguousJSON) true.
func (e *AmbiguityError) Is(target error) bool { return target == ErrAmbiguousJSON }

// Validate checks that b is one JSON value (surrounded by whitespace only)
// that every decoder reads alike: no object holds two keys that are equal
// or equal under Unicode simple case folding (the relation encoding/json
// uses to match keys to fields: "model"/"Model", "mask"/"maſk", "k"/"K"
// (Kelvin sign)), compared after unescaping ("mod\u0065l" is "model");
// every string is valid UTF-8 and has no lone surrogate escape. It returns
// ErrInvalidJSON for text that is not JSON, ErrTooComplex for a body of
// more than MaxValues values (it stops scanning there) and an
// *AmbiguityError for JSON that is ambiguous. It allocates only for
// escaped keys and for scratch space kept between calls.
func Validate(b []byte) error {
	v := validators.Get().(*validator)
	defer v.release()
	v.s = b
	return v.run()
}

// validators keeps scratch space (keys and path stacks) between calls.
var validators = sync.Pool{New: func() any { return new(validator) }}

// release drops every reference into the body and returns v to the pool.
func (v *validator) release() {
	clear(v.keys[:cap(v.keys)])
	clear(v.path[:cap(v.path)])
	*v = validator{keys: v.keys[:0], path: v.path[:0], hashes: v.hashes[:0]}
	validators.Put(v)
}

func (v *validator) run() error {
	v.ws()
	if err := v.value(0); err != nil {
		return err
	}
	v.ws()
	if v.i != len(v.s) {
		return ErrInvalidJSON
	}
	if v.amb != nil {
		return v.amb
	}
	return nil
}

type validator struct {
	s []byte
	i int
	// keys of the objects being scanned, innermost last; each object
	// owns keys[start:] while it is scanned.
	keys [][]byte
	// path segments, for errors only: the object key or array index of
	// each level being scanned.
	path []seg
	amb  *AmbiguityError // the first ambiguity found
	// hashes is manyFold's scratch space.
	hashes []hashedKey
	// values counts the JSON values scanned, up to MaxValues.
	values int
}

type seg struct {
	key   []byte // the key, unescaped; nil for an array element
	index int
}

func (v *validator) ws() { v.i = skipWS(v.s, v.i) }

// ambiguous notes the first ambiguity; the scan goes on, so that text
// that is not JSON at all is reported as such.
func (v *validator) ambiguous(problem string) {
	if v.amb == nil {
		v.amb = &AmbiguityError{Path: v.pathString(), Problem: problem}
	}
}

// pathString renders the path, naming a key only when it is a short
// identifier.
func (v *validator) pathString() string {
	var b strings.Builder
	for _, p := range v.path {
		if p.key == nil {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(p.index))
			b.WriteByte(']')
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		if safeKey(p.key) {
			b.Write(p.key)
		} else {
			b.WriteString("<key>")
		}
	}
	return b.String()
}

// safeKey reports whether k may appear in an error message: a short run
// of ASCII letters, digits and underscores.
func safeKey(k []byte) bool {
	if len(k) == 0 || len(k) > 40 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func (v *validator) value(depth int) error {
	if v.i >= len(v.s) {
		return ErrInvalidJSON
	}
	if v.values++; v.values > MaxValues {
		return ErrTooComplex
	}
	switch c := v.s[v.i]; {
	case c == '{':
		return v.object(depth + 1)
	case c == '[':
		return v.array(depth + 1)
	case c == '"':
		_, _, err := v.str()
		return err
	case c == '-' || isDigit(c):
		return v.number()
	case c == 't':
		return v.lit("true")
	case c == 'f':
		return v.lit("false")
	case c == 'n':
		return v.lit("null")
	}
	return ErrInvalidJSON
}

func (v *validator) lit(l string) error {
	if len(v.s)-v.i < len(l) || string(v.s[v.i:v.i+len(l)]) != l {
		return ErrInvalidJSON
	}
	v.i += len(l)
	return nil
}

func (v *validator) number() error {
	end, _, ok := scanNumber(v.s, v.i)
	if !ok {
		return ErrInvalidJSON
	}
	v.i = end
	return nil
}

// str scans a string token and returns its inside as written and whether
// it holds escapes. Escapes must be valid and \u escapes must pair
// surrogates; the text must be valid UTF-8.
func (v *validator) str() (inside []byte, esc bool, err error) {
	v.i++ // the opening quote
	start := v.i
	ascii := true
	for v.i < len(v.s) {
		c := v.s[v.i]
		switch {
		case c == '"':
			inside = v.s[start:v.i]
			v.i++
			if !ascii && !utf8.Valid(inside) {
				v.ambiguous("a string is not valid UTF-8 (decoders replace or keep such bytes differently); send UTF-8")
			}
			return inside, esc, nil
		case c == '\\':
			esc = true
			if v.i+1 >= len(v.s) {
				return nil, false, ErrInvalidJSON
			}
			switch v.s[v.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				v.i += 2
			case 'u':
				r, ok := hex4(v.s, v.i+2)
				if !ok {
					return nil, false, ErrInvalidJSON
				}
				v.i += 6
				switch {
				case 0xDC00 <= r && r <= 0xDFFF:
					v.ambiguous(loneSurrogate)
				case 0xD800 <= r && r <= 0xDBFF:
					if v.i+1 >= len(v.s) || v.s[v.i] != '\\' || v.s[v.i+1] != 'u' {
						v.ambiguous(loneSurrogate)
						break
					}
					r2, ok := hex4(v.s, v.i+2)
					if !ok {
						return nil, false, ErrInvalidJSON
					}
					if r2 < 0xDC00 || r2 > 0xDFFF {
						v.ambiguous(loneSurrogate) // the next escape is scanned on its own
						break
					}
					v.i += 6
				}
			default:
				return nil, false, ErrInvalidJSON
			}
		case c < 0x20:
			return nil, false, ErrInvalidJSON
		default:
			if c >= utf8.RuneSelf {
				ascii = false
			}
			v.i++
		}
	}
	return nil, false, ErrInvalidJSON
}

const loneSurrogate = `a string holds a lone UTF-16 surrogate escape (\uD800-\uDFFF not in a high-low pair); decoders read it differently`

// manyKeys is the object size from which keys are compared through a map
// of folded keys instead of pairwise.
const manyKeys = 24

func (v *validator) object(depth int) error {
	if depth > maxValidateDepth {
		return ErrInvalidJSON
	}
	v.i++ // {
	v.ws()
	if v.i < len(v.s) && v.s[v.i] == '}' {
		v.i++
		return nil
	}
	start := len(v.keys)
	defer func() { v.keys = v.keys[:start] }()
	v.path = append(v.path, seg{})
	defer func() { v.path = v.path[:len(v.path)-1] }()
	for {
		v.ws()
		if v.i >= len(v.s) || v.s[v.i] != '"' {
			return ErrInvalidJSON
		}
		inside, esc, err := v.str()
		if err != nil {
			return err
		}
		key := inside
		if esc {
			key, err = unescapeKey(inside)
			if err != nil {
				return err
			}
		}
		v.path[len(v.path)-1] = seg{key: key}
		// Compare with the keys seen so far in this object; objects with
		// many keys are compared once, when they end (manyFold).
		own := v.keys[start:]
		if len(own) < manyKeys {
			for _, k := range own {
				if bytes.EqualFold(k, key) {
					v.ambiguous(keyProblem(own, key))
					break
				}
			}
		}
		v.keys = append(v.keys, key)
		v.ws()
		if v.i >= len(v.s) || v.s[v.i] != ':' {
			return ErrInvalidJSON
		}
		v.i++
		v.ws()
		if err := v.value(depth); err != nil {
			return err
		}
		v.ws()
		if v.i >= len(v.s) {
			return ErrInvalidJSON
		}
		switch v.s[v.i] {
		case ',':
			v.i++
		case '}':
			v.i++
			if len(v.keys)-start > manyKeys {
				v.manyFold(start)
			}
			return nil
		default:
			return ErrInvalidJSON
		}
	}
}

// hashedKey is a key of a big object by its fold hash.
type hashedKey struct {
	h uint64
	i int32 // index in keys
}

// manyFold finds keys of the object owning keys[start:] that fold alike,
// past its first manyKeys keys (compared pairwise as they came): it sorts
// the keys' fold hashes in scratch space kept between calls and compares
// the keys whose hashes are equal. It allocates nothing once the scratch
// space has grown.
func (v *validator) manyFold(start int) {
	if v.amb != nil {
		return
	}
	own := v.keys[start:]
	hs := v.hashes[:0]
	for i, k := range own {
		hs = append(hs, hashedKey{foldHash(k), int32(i)})
	}
	slices.SortFunc(hs, func(a, b hashedKey) int { return cmp.Or(cmp.Compare(a.h, b.h), cmp.Compare(a.i, b.i)) })
	v.hashes = hs[:0]
	for j := 1; j < len(hs); j++ {
		if hs[j].h != hs[j-1].h {
			continue
		}
		// Keys sharing a hash: compare the later one with each before it.
		for k := j - 1; k >= 0 && hs[k].h == hs[j].h; k-- {
			if a, b := own[hs[k].i], own[hs[j].i]; bytes.EqualFold(a, b) {
				late := hs[j].i
				v.path[len(v.path)-1] = seg{key: own[late]}
				v.ambiguous(keyProblem(own[:late], own[late]))
				return
			}
		}
	}
}

// keyProblem says how key clashes with the keys before it.
func keyProblem(own [][]byte, key []byte) string {
	for _, k := range own {
		if bytes.Equal(k, key) {
			return "the key appears twice in one object (decoders keep different copies); send it once"
		}
	}
	return "two keys of one object differ only in letter case (some decoders match keys case-insensitively); send one spelling"
}

func (v *validator) array(depth int) error {
	if depth > maxValidateDepth {
		return ErrInvalidJSON
	}
	v.i++ // [
	v.ws()
	if v.i < len(v.s) && v.s[v.i] == ']' {
		v.i++
		return nil
	}
	v.path = append(v.path, seg{})
	defer func() { v.path = v.path[:len(v.path)-1] }()
	for n := 0; ; n++ {
		v.path[len(v.path)-1] = seg{index: n}
		v.ws()
		if err := v.value(depth); err != nil {
			return err
		}
		v.ws()
		if v.i >= len(v.s) {
			return ErrInvalidJSON
		}
		switch v.s[v.i] {
		case ',':
			v.i++
		case ']':
			v.i++
			return nil
		default:
			return ErrInvalidJSON
		}
	}
}

// unescapeKey decodes a key's escapes (already checked by str).
func unescapeKey(inside []byte) ([]byte, error) {
	b := make([]byte, 0, len(inside))
	for i := 0; i < len(inside); i++ {
		c := inside[i]
		if c != '\\' {
			b = append(b, c)
			continue
		}
		i++
		switch c = inside[i]; c {
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r := hexRune(inside[i+1 : i+5])
			i += 4
			if 0xD800 <= r && r <= 0xDBFF && i+6 < len(inside) && inside[i+1] == '\\' && inside[i+2] == 'u' {
				if r2 := hexRune(inside[i+3 : i+7]); 0xDC00 <= r2 && r2 <= 0xDFFF {
					r = 0x10000 + (r-0xD800)<<10 + (r2 - 0xDC00)
					i += 6
				}
			}
			// A lone surrogate (already noted as ambiguous) becomes U+FFFD.
			b = utf8.AppendRune(b, r)
		default: // " \ /
			b = append(b, c)
		}
	}
	return b, nil
}

func hexRune(h []byte) rune {
	var r rune
	for _, c := range h {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		default:
			r = r<<4 | rune(c-'A'+10)
		}
	}
	return r
}

// foldHash hashes k (FNV-1a) so that keys strings.EqualFold finds equal
// hash alike: every rune is hashed as the smallest rune of its simple-fold
// orbit (as encoding/json folds names). It does not allocate.
func foldHash(k []byte) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(k); {
		r, n := rune(k[i]), 1
		if r >= utf8.RuneSelf {
			r, n = utf8.DecodeRune(k[i:])
		}
		i += n
		r = foldRuneLeast(r)
		for ; r > 0; r >>= 8 {
			h ^= uint64(r & 0xff)
			h *= 1099511628211
		}
		h ^= 0xff // rune separator
		h *= 1099511628211
	}
	return h
}

func foldRuneLeast(r rune) rune {
	if r < utf8.RuneSelf {
		if 'a' <= r && r <= 'z' {
			return r - ('a' - 'A')
		}
		return r
	}
	least := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		least = min(least, f)
	}
	return least
}
