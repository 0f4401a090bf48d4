package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pamctl/pamctl/broker/auditsink"
	"github.com/pamctl/pamctl/broker/safefile"
	"github.com/pamctl/pamctl/broker/tlsconf"
	"github.com/pamctl/pamctl/broker/vault"
	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/store"
)

// This file makes the configuration fail closed: every key of the file is
// checked against the typed Config (at any depth, inside lists too) before
// viper decodes it, so a typo is an error with its line instead of a
// setting silently left at its zero value.

var (
	durationType   = reflect.TypeOf(time.Duration(0))
	maskConfigType = reflect.TypeOf(mask.Config{})
)

// keyError is one problem found in the file, with its line.
type keyError struct {
	Line int
	Path string // where the key sits, e.g. "policies[0]"; "" at the top
	Msg  string
}

func (e *keyError) Error() string {
	where := ""
	if e.Path != "" {
		where = e.Path + ": "
	}
	return fmt.Sprintf("line %d: %s%s", e.Line, where, e.Msg)
}

// checkFile parses raw as YAML and reports every key that Config does not
// know, every duration written as a bare number and every value of the
// wrong shape, each with its line. It returns the top-level keys that the
// file sets to something other than null.
func checkFile(raw []byte) (map[string]bool, error) {
	var doc yaml.Node
	present := map[string]bool{}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return present, nil // an empty file
	case err != nil:
		return nil, err
	}
	// Only the first document of a stream is read: rules or policies in
	// a second one would silently do nothing.
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, fmt.Errorf("a second YAML document (after ---): %w", err)
	default:
		return nil, &keyError{Line: next.Line, Msg: "a second YAML document (after ---) is not read: pamctl reads one document; merge it into the first or remove the ---"}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return present, nil
		}
		root = root.Content[0]
	}
	if isNull(root) {
		return present, nil
	}
	var errs []error
	if root.Kind == yaml.MappingNode {
		for _, kv := range pairs(root) {
			if !isNull(kv[1]) {
				present[strings.ToLower(kv[0].Value)] = true
			}
		}
	}
	walkNode(root, reflect.TypeOf(Config{}), "", &errs)
	return present, errors.Join(errs...)
}

func isNull(n *yaml.Node) bool {
	n = deref(n)
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// pairs lists a mapping's key/value nodes, with merge keys (<<) expanded.
func pairs(n *yaml.Node) [][2]*yaml.Node {
	var out [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		if k.Value == "<<" && k.Tag == "!!merge" {
			srcs := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				srcs = v.Content
			}
			for _, s := range srcs {
				if s = deref(s); s.Kind == yaml.MappingNode {
					out = append(out, pairs(s)...)
				}
			}
			continue
		}
		out = append(out, [2]*yaml.Node{k, v})
	}
	return out
}

// field is one key a struct accepts.
type field struct {
	name string
	typ  reflect.Type
}

// structKeys lists the keys t accepts (mapstructure tags; squashed
// embedded structs inline) and the type of its ",remain" field, if any.
func structKeys(t reflect.Type) (keys []field, remain reflect.Type) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("mapstructure")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		switch {
		case strings.Contains(opts, "remain"):
			remain = f.Type
			continue
		case strings.Contains(opts, "squash") || (f.Anonymous && name == ""):
			sub, r := structKeys(indirect(f.Type))
			keys = append(keys, sub...)
			if r != nil {
				remain = r
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		keys = append(keys, field{strings.ToLower(name), f.Type})
	}
	return keys, remain
}

func indirect(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// walkNode checks n against type t at path.
func walkNode(n *yaml.Node, t reflect.Type, path string, errs *[]error) {
	n = deref(n)
	t = indirect(t)
	if isNull(n) {
		return
	}
	bad := func(format string, args ...any) {
		*errs = append(*errs, &keyError{Line: n.Line, Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode {
			bad("expected a duration such as 30m, 8h or 90d")
		} else if n.Tag == "!!int" || n.Tag == "!!float" {
			bad("%s has no unit; write e.g. %ss, %sm, %sh or %sd (a bare number is not a duration)", n.Value, n.Value, n.Value, n.Value, n.Value)
		}
	case isInteger(t) && n.Kind == yaml.ScalarNode:
		switch n.Tag {
		case "!!int", "!!float":
			if err := wholeNumberText(n.Value, n.Tag, t); err != nil {
				bad("%v", err)
			}
		case "!!str", "!!bool", "!!null":
			// The decoder reads a string as decimal and refuses a bool.
		default: // !!binary, a local tag: a number hidden from a reader
			bad("%d bytes are not a whole number (a value tagged %s)", len(n.Value), truncate(n.Tag, maxNumeral))
		}
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			bad("expected a mapping of keys, got %s", kindName(n))
			return
		}
		keys, remain := structKeys(t)
		checkDuplicates(n, path, errs)
		var extra []*yaml.Node // keys left to the remain field
		for _, kv := range pairs(n) {
			k, v := kv[0], kv[1]
			name := strings.ToLower(k.Value)
			i := slices.IndexFunc(keys, func(f field) bool { return f.name == name })
			switch {
			case i >= 0 && keys[i].name != k.Value:
				// The decoder ignores case, so "Rules" would be read as
				// rules; only the documented spelling is accepted.
				*errs = append(*errs, &keyError{Line: k.Line, Path: path, Msg: fmt.Sprintf(
					"unknown key %q: keys are lower case (did you mean %q?)", k.Value, keys[i].name)})
				walkNode(v, keys[i].typ, join(path, keys[i].name), errs)
			case i >= 0:
				walkNode(v, keys[i].typ, join(path, k.Value), errs)
			case remain != nil:
				extra = append(extra, k)
				if remain.Kind() == reflect.Map {
					walkNode(v, remain.Elem(), join(path, k.Value), errs)
				}
			default:
				msg := fmt.Sprintf("unknown key %q", k.Value)
				if s := suggest(name, keys); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				} else {
					msg += " (known here: " + strings.Join(fieldNames(keys), ", ") + ")"
				}
				*errs = append(*errs, &keyError{Line: k.Line, Path: path, Msg: msg})
			}
		}
		if t == maskConfigType {
			checkDetectors(n, extra, path, errs)
		}
	case t.Kind() == reflect.Slice || t.Kind() == reflect.Array:
		switch n.Kind {
		case yaml.SequenceNode:
			for i, item := range n.Content {
				walkNode(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
			}
		case yaml.ScalarNode:
			// "a,b" decodes into a list of strings; nothing else does.
			if indirect(t.Elem()).Kind() != reflect.String {
				bad("expected a list, got %s", kindName(n))
			}
		default:
			bad("expected a list, got %s", kindName(n))
		}
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			bad("expected a mapping, got %s", kindName(n))
			return
		}
		checkDuplicates(n, path, errs)
		for _, kv := range pairs(n) {
			walkNode(kv[1], t.Elem(), join(path, kv[0].Value), errs)
		}
	case t.Kind() == reflect.Interface:
		// anything goes
	default: // a scalar
		if n.Kind != yaml.ScalarNode {
			bad("expected a single value, got %s", kindName(n))
		}
	}
}

// wholeNumberText checks the text of a YAML number for an integer
// setting, before YAML reads it: YAML reads 010 as 8, 0x10 as 16, 0o17,
// 0b101, and 1_000 as 1000, and a literal past 64 bits as a float that is
// not the number written. Plain decimal, and a float form that is exactly
// a whole number (1e9), are accepted.
func wholeNumberText(text, tag string, t reflect.Type) error {
	if len(text) > maxNumeral {
		// big.Rat's parse grows faster than the text: a long numeral
		// would stall config check and every reload.
		return fmt.Errorf("%s is too long to be a whole-number setting", truncate(text, maxNumeral))
	}
	digits := strings.TrimLeft(text, "+-")
	if strings.ContainsRune(text, '_') || len(digits) > 1 && digits[0] == '0' && strings.ContainsRune("0123456789xXoObB", rune(digits[1])) {
		return fmt.Errorf("%s is not plain decimal: write a whole number without leading zeros, underscores or a 0x/0o/0b prefix (YAML reads 010 as 8 and 0x10 as 16)", text)
	}
	r, ok := new(big.Rat).SetString(text)
	if !ok || !r.IsInt() {
		return fmt.Errorf("%s is not a whole number", text)
	}
	n := r.Num()
	if err := inRange(n, t); err != nil {
		return err
	}
	if tag == "!!float" || strings.ContainsAny(text, ".eE") {
		// YAML reads it as a float64 (so written, or tagged !!float),
		// which past 2^53 is not the number written.
		f, _ := strconv.ParseFloat(text, 64)
		if got, _ := big.NewFloat(f).Int(nil); got.Cmp(n) != 0 {
			return fmt.Errorf("%s cannot be read exactly with a point or an exponent; write it as a whole number", text)
		}
	}
	return nil
}

// maxNumeral is the longest number text a whole-number setting takes: 64
// bits need 20 digits; the rest is room for a sign, a point and an
// exponent.
const maxNumeral = 40

// checkDuplicates reports a key written twice in one mapping, exactly or
// differing only in case: the decoder lower-cases keys, so one of the two
// would silently win. Merge keys (<<) are held to the same rule where
// YAML would silently drop a value: a key brought in twice by merge keys,
// and a key both written and merged in, unless it is the template idiom
// `{ <<: *up, name: b }`: a single value written after the << line
// replacing a single value. A list or mapping written beside a merged one
// replaces it whole (rules are not appended, masking is not merged
// deeply), and a key written before the << reads as if the merge came
// last, so both are errors naming both lines.
func checkDuplicates(n *yaml.Node, path string, errs *[]error) {
	type merged struct {
		key   *yaml.Node // the key inside the merged mapping
		val   *yaml.Node
		at    int // line of the << key
		index int // position of the << key in n
	}
	isMerge := func(k *yaml.Node) bool { return k.Value == "<<" && k.Tag == "!!merge" }
	fromMerge := map[string]merged{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !isMerge(k) {
			continue
		}
		for _, kv := range pairs(&yaml.Node{Kind: yaml.MappingNode, Content: n.Content[i : i+2]}) {
			name := strings.ToLower(kv[0].Value)
			if prev, ok := fromMerge[name]; ok {
				*errs = append(*errs, &keyError{Line: k.Line, Path: path, Msg: fmt.Sprintf(
					"key %q is brought in twice by merge keys (<<), from line %d and line %d; YAML keeps one and silently drops the other: merge it from one place",
					kv[0].Value, prev.key.Line, kv[0].Line)})
				continue
			}
			fromMerge[name] = merged{key: kv[0], val: kv[1], at: k.Line, index: i}
		}
	}
	first := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yaml.ScalarNode || isMerge(k) {
			continue
		}
		name := strings.ToLower(k.Value)
		if m, ok := fromMerge[name]; ok {
			v := deref(n.Content[i+1])
			switch {
			case i < m.index:
				*errs = append(*errs, &keyError{Line: k.Line, Path: path, Msg: fmt.Sprintf(
					"key %q is written here and also brought in by the merge key (<<) on line %d (from line %d); YAML keeps this one and silently drops the merged value: remove one, or write the override after the << line",
					k.Value, m.at, m.key.Line)})
			case v.Kind != yaml.ScalarNode || deref(m.val).Kind != yaml.ScalarNode:
				*errs = append(*errs, &keyError{Line: k.Line, Path: path, Msg: fmt.Sprintf(
					"key %q replaces the %s brought in by the merge key (<<) on line %d (from line %d) whole; YAML does not combine them, so the merged entries would silently be dropped: write the whole value here or remove it from the merge",
					k.Value, kindWord(deref(m.val)), m.at, m.key.Line)})
			}
		}
		prev, dup := first[name]
		if !dup {
			first[name] = k
			continue
		}
		how := "repeats"
		if prev.Value != k.Value {
			how = "differs only in case from"
		}
		*errs = append(*errs, &keyError{Line: k.Line, Path: path, Msg: fmt.Sprintf(
			"duplicate key %q %s %q on line %d; a key may appear once per mapping (one of them would silently win)",
			k.Value, how, prev.Value, prev.Line)})
	}
}

func kindWord(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "value"
}

// checkDetectors reports masking detector names that are neither built in
// nor defined under custom: in the same direction.
func checkDetectors(n *yaml.Node, names []*yaml.Node, path string, errs *[]error) {
	known := map[string]bool{}
	for _, t := range mask.Types() {
		known[t] = true
	}
	for _, kv := range pairs(n) {
		if strings.ToLower(kv[0].Value) != "custom" || kv[1].Kind != yaml.SequenceNode {
			continue
		}
		for _, item := range kv[1].Content {
			if item = deref(item); item.Kind == yaml.MappingNode {
				for _, c := range pairs(item) {
					if strings.ToLower(c[0].Value) == "name" {
						known[strings.ToUpper(strings.TrimSpace(c[1].Value))] = true
					}
				}
			}
		}
	}
	for _, k := range names {
		if !known[strings.ToUpper(strings.TrimSpace(k.Value))] {
			*errs = append(*errs, &keyError{Line: k.Line, Path: path, Msg: fmt.Sprintf(
				"unknown key %q: neither default, custom nor a detector (detectors: %s, or a name defined under custom:)",
				k.Value, strings.Join(mask.Types(), ", "))})
		}
	}
}

// kindName names what n is, never what it says: a value where a mapping
// was expected is often a secret written one level too high (a webhook
// URL for notify.slack, a header line for headers), and the error goes to
// the log and, on a reload, the trail.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("a single value (%d bytes, not shown: it may be a secret)", len(n.Value))
}

func fieldNames(keys []field) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.name
	}
	return out
}

// suggest names the known key closest to name: the same once underscores
// and a plural s are ignored, or at most two edits away.
func suggest(name string, keys []field) string {
	norm := func(s string) string { return strings.TrimSuffix(strings.ReplaceAll(s, "_", ""), "s") }
	best, bestD := "", 3
	for _, k := range keys {
		if norm(k.name) == norm(name) {
			return k.name
		}
		if d := editDistance(name, k.name); d < bestD {
			best, bestD = k.name, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// envKeys lists every key that can be set from the environment: each
// single value of Config (PAMCTL_ + the key upper-cased, "." → "_").
// Lists of entries (issuers, upstreams, policies, rules, masking custom
// detectors) and maps (masking detector overrides) are file only.
func envKeys() []string {
	var out []string
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		keys, _ := structKeys(t)
		for _, k := range keys {
			p := join(path, k.name)
			ft := indirect(k.typ)
			switch {
			case ft == durationType:
				out = append(out, p)
			case ft.Kind() == reflect.Struct:
				walk(ft, p)
			case ft.Kind() == reflect.Map, ft.Kind() == reflect.Slice && indirect(ft.Elem()).Kind() == reflect.Struct:
				// file only
			default:
				out = append(out, p)
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	sort.Strings(out)
	return out
}

// configPaths lists every key of Config at any depth (list entries and
// maps not entered): what an environment variable name could mean. open
// lists the mappings whose other keys are free-form (masking detector
// overrides).
func configPaths() (paths, open []string) {
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		keys, remain := structKeys(t)
		if remain != nil {
			open = append(open, path)
		}
		for _, k := range keys {
			p := join(path, k.name)
			paths = append(paths, p)
			if ft := indirect(k.typ); ft != durationType && ft.Kind() == reflect.Struct {
				walk(ft, p)
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	return paths, open
}

// checkEnv refuses PAMCTL_* variables that look like configuration but
// would silently be ignored: a name that differs from a variable pamctl
// reads only in case (names are case-sensitive; only the upper-case one is
// read), and a variable for a key that can only be set in the file
// (PAMCTL_RULES, PAMCTL_MASKING_PROMPT_EMAIL). Other PAMCTL_* names are
// not configuration and are left alone.
func checkEnv(environ []string) error {
	read := map[string]bool{"PAMCTL_CONFIG": true, vault.EnvMasterKey: true}
	for _, k := range envKeys() {
		read[EnvName(k)] = true
	}
	paths, open := configPaths()
	fileOnly := map[string]string{}
	for _, k := range paths {
		if n := EnvName(k); !read[n] {
			fileOnly[n] = k
		}
	}
	fileOnlyKey := func(up string) (string, bool) {
		if k, ok := fileOnly[up]; ok {
			return k, true
		}
		for _, o := range open {
			if rest, ok := strings.CutPrefix(up, EnvName(o)+"_"); ok && rest != "" && !read[up] {
				return o + "." + rest, true
			}
		}
		return "", false
	}
	var errs []error
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		up := strings.ToUpper(name)
		if !strings.HasPrefix(up, "PAMCTL_") {
			continue
		}
		switch key, isKey := fileOnlyKey(up); {
		case name != up && (read[up] || isKey):
			errs = append(errs, fmt.Errorf("environment variable %s is not read: names are case-sensitive; write %s", name, up))
		case isKey:
			errs = append(errs, fmt.Errorf("environment variable %s is not read: %s can only be set in the config file (see docs/configuration.md#environment)", name, key))
		}
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}

// EnvName is the environment variable that sets config key k.
func EnvName(k string) string {
	return "PAMCTL_" + strings.ToUpper(strings.ReplaceAll(k, ".", "_"))
}

// durationBound is what a duration key accepts. Keys are config paths with
// list indexes written as [].
type durationBound struct {
	Min, Max time.Duration // Max 0: no ceiling
	Zero     string        // what 0 means, when 0 is allowed
	Policy   bool          // checked by policy.Set.Validate (it knows the policy's rules)
}

// durationBounds holds every duration key of Config; a test keeps it
// complete. The minimums catch a unit slip ("90s" for "90d", "1m" for "1h").
var durationBounds = map[string]durationBound{
	"session_ttl":                {Min: 5 * time.Minute, Max: 8 * time.Hour, Zero: "use sessions.max_lifetime"},
	"sessions.max_lifetime":      {Min: 5 * time.Minute, Max: 8 * time.Hour, Zero: "8h, the default"},
	"sessions.idle_timeout":      {Min: time.Minute, Max: 8 * time.Hour, Zero: "no idle timeout"},
	"approvals.reauth_after":     {Min: time.Minute, Max: 24 * time.Hour},
	"proxy.timeout":              {Min: time.Second},
	"proxy.hold_timeout":         {Min: time.Second, Max: time.Hour},
	"proxy.body_timeout":         {Min: time.Second, Max: 10 * time.Minute},
	"proxy.revocation_staleness": {Min: time.Second, Max: time.Hour, Zero: "30s, the default"},
	"upstreams[].timeout":        {Min: time.Second, Zero: "use proxy.timeout"},
	"audit.retention":            {Min: time.Hour, Zero: "keep events forever"},
	"requests.retention":         {Min: time.Hour, Zero: "keep ended requests forever"},
	"audit.head_interval":        {Min: time.Second, Max: time.Hour},
	"store.etcd.dial_timeout":    {Min: 100 * time.Millisecond, Max: time.Minute, Zero: "5s, the default"},
	"audit.sinks[].timeout":      {Min: time.Second, Max: 10 * time.Minute, Zero: "30s, the default"},
	"policies[].max_ttl":         {Policy: true},
	"policies[].default_ttl":     {Policy: true},
	"policies[].pending_ttl":     {Min: time.Minute, Zero: "1h, the default"},
}

// durationKeys lists every duration key of Config (list entries as []).
func durationKeys() []string {
	var out []string
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		t = indirect(t)
		switch {
		case t == durationType:
			out = append(out, path)
		case t.Kind() == reflect.Struct:
			keys, _ := structKeys(t)
			for _, k := range keys {
				walk(k.typ, join(path, k.name))
			}
		case t.Kind() == reflect.Slice:
			walk(t.Elem(), path+"[]")
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	sort.Strings(out)
	return out
}

// durations lists every duration in v (a Config) with its path.
func durations(v reflect.Value, path string, fn func(key, path string, d time.Duration)) {
	var walk func(v reflect.Value, key, path string)
	walk = func(v reflect.Value, key, path string) {
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return
			}
			v = v.Elem()
		}
		switch {
		case v.Type() == durationType:
			fn(key, path, time.Duration(v.Int()))
		case v.Kind() == reflect.Struct:
			keys, _ := structKeys(v.Type())
			for _, k := range keys {
				f := fieldByKey(v, k.name)
				if f.IsValid() {
					walk(f, join(key, k.name), join(path, k.name))
				}
			}
		case v.Kind() == reflect.Slice:
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i), key+"[]", fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	walk(v, path, path)
}

// fieldByKey finds the field of struct v tagged key (through squashed structs).
func fieldByKey(v reflect.Value, key string) reflect.Value {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		if strings.Contains(opts, "squash") || (f.Anonymous && name == "") {
			if r := fieldByKey(reflect.Indirect(v.Field(i)), key); r.IsValid() {
				return r
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		if strings.ToLower(name) == key {
			return v.Field(i)
		}
	}
	return reflect.Value{}
}

// validateDurations checks every duration against its bounds.
func (c *Config) validateDurations() []error {
	var errs []error
	durations(reflect.ValueOf(c).Elem(), "", func(key, path string, d time.Duration) {
		b, ok := durationBounds[key]
		if !ok {
			b = durationBound{Min: time.Second, Zero: "the default"}
		}
		switch {
		case b.Policy:
		case d < 0:
			errs = append(errs, fmt.Errorf("%s: %s must not be negative", path, fmtDur(d)))
		case d == 0 && b.Zero != "":
		case d < b.Min:
			hint := ""
			if b.Zero != "" {
				hint = fmt.Sprintf(" (or 0s: %s)", b.Zero)
			}
			errs = append(errs, fmt.Errorf("%s: %s is below the minimum %s%s", path, fmtDur(d), fmtDur(b.Min), hint))
		case b.Max > 0 && d > b.Max:
			errs = append(errs, fmt.Errorf("%s: %s is above the maximum %s", path, fmtDur(d), fmtDur(b.Max)))
		}
	})
	return errs
}

// fmtDur prints a duration the way the config accepts it (whole days as d).
func fmtDur(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	if d > 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	s := d.String()
	// 1h0m0s → 1h, 30m0s → 30m
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// CheckPrivate refuses a data dir, database or master key file that group
// or others may read or write (on Windows: that its DACL opens to anyone
// but pamctl's user, SYSTEM and Administrators; safefile.CheckPrivate), as
// ssh refuses such a private key, and a
// data dir or master key file other local users could replace: through a
// directory above it, or a symlink on the way to it, or (the master key)
// as its owner (safefile.CheckWay, safefile.CheckPerms). Paths that do not
// exist yet are fine: pamctl creates them owner-only (the directories
// above the data dir are judged all the same: they would hold it). The
// other files the configuration names are CheckNamedFiles' job: the admin
// commands that call CheckPrivate do not read them.
func (c *Config) CheckPrivate() error {
	var errs []error
	check := func(what, path string, fix os.FileMode) bool {
		if err := safefile.CheckPrivate(what, path, fix); err != nil {
			errs = append(errs, err)
			return false
		}
		return true
	}
	if c.DataDir != "" {
		db := filepath.Join(c.DataDir, store.FileName)
		check("data dir", c.DataDir, 0o700)
		check("database", db, 0o600)
		for _, err := range []error{safefile.CheckWay(c.DataDir), safefile.CheckOwner(c.DataDir), safefile.CheckOwner(db)} {
			if err != nil {
				errs = append(errs, fmt.Errorf("data dir %w", err))
			}
		}
	}
	if c.MasterKeyFile != "" && os.Getenv(vault.EnvMasterKey) == "" {
		// Once each: its mode, refused above at any group or others bit,
		// is not reported again as writable by every local user.
		err := safefile.CheckWay(c.MasterKeyFile)
		if check("master key file", c.MasterKeyFile, 0o600) && err == nil {
			_, err = safefile.CheckPerms(c.MasterKeyFile, safefile.Public) // its owner
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("master_key_file: %w", err))
		}
	}
	return errors.Join(errs...)
}

// CheckNamedFiles judges every other file the configuration names (keys,
// tokens, passwords, credential headers, certificates, CA bundles) with
// safefile.CheckPerms: an error for each that other local users could
// replace (they could substitute their own key or CA), and a warning for
// each secret one group or others may read: it works, but should not
// (Kubernetes secret volumes mount files 0644 by default). `serve` (both
// roles) and `config check` run it. Paths that do not exist are left to
// their reader.
func (c *Config) CheckNamedFiles() (warnings []string, err error) {
	warnings, _, err = c.checkNamedFiles()
	return warnings, err
}

// checkNamedFiles is CheckNamedFiles, also returning the paths it refused.
func (c *Config) checkNamedFiles() (warnings []string, refused map[string]bool, err error) {
	var errs []error
	refused = map[string]bool{}
	for _, f := range c.namedFiles() {
		w, err := safefile.CheckPerms(f.path, f.secret)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", f.key, err))
			refused[f.path] = true
		case w != "":
			warnings = append(warnings, f.key+": "+w)
		}
	}
	return warnings, refused, errors.Join(errs...)
}

// CheckAuditTargets reads, with the function serve's start uses
// (auditsink.CheckTargets), the files an audit sink or the anchor is
// built from: a url_file holding one http(s) URL, a headers_file, a
// ca_file, and what exists of a file sink's path. refused are files
// already reported (CheckNamedFiles).
func (c *Config) CheckAuditTargets(refused map[string]bool) error {
	return errors.Join(auditsink.CheckTargets(c.Audit.Sinks, c.Audit.Anchor, func(p string) bool { return refused[p] })...)
}

// namedFile is a file the configuration points pamctl at.
type namedFile struct {
	key    string // where the configuration names it
	path   string
	secret bool // its content is a secret (else a certificate or CA bundle)
}

// namedFiles lists every file the configuration names that pamctl reads,
// secrets and the certificates and CA bundles that decide whom it trusts,
// but the master key file (CheckPrivate).
func (c *Config) namedFiles() []namedFile {
	var out []namedFile
	add := func(key, path string, secret bool) {
		if path != "" {
			out = append(out, namedFile{key, path, secret})
		}
	}
	add("ca_file", c.CAFile, safefile.Public)
	add("client_cert_file", c.ClientCertFile, safefile.Public)
	add("client_key_file", c.ClientKeyFile, safefile.Secret)
	for _, l := range []struct {
		key string
		tls tlsconf.Config
	}{{"broker.tls", c.Broker.TLS}, {"proxy.tls", c.Proxy.TLS}, {"metrics.tls", c.Metrics.TLS}} {
		add(l.key+".cert_file", l.tls.CertFile, safefile.Public)
		add(l.key+".key_file", l.tls.KeyFile, safefile.Secret)
		add(l.key+".client_ca_file", l.tls.ClientCAFile, safefile.Public)
	}
	add("proxy.identity.id_token_file", c.Proxy.Identity.IDTokenFile, safefile.Secret)
	e := c.Store.Etcd
	add("store.etcd.tls.ca_file", e.TLS.CAFile, safefile.Public)
	add("store.etcd.tls.cert_file", e.TLS.CertFile, safefile.Public)
	add("store.etcd.tls.key_file", e.TLS.KeyFile, safefile.Secret)
	add("store.etcd.password_file", e.PasswordFile, safefile.Secret)
	for i, is := range c.Issuers {
		add(fmt.Sprintf("issuers[%d].client_secret_file", i), is.ClientSecretFile, safefile.Secret)
	}
	for i, sk := range c.Audit.Sinks {
		add(fmt.Sprintf("audit.sinks[%d].headers_file", i), sk.HeadersFile, safefile.Secret)
		add(fmt.Sprintf("audit.sinks[%d].url_file", i), sk.URLFile, safefile.Secret)
		add(fmt.Sprintf("audit.sinks[%d].ca_file", i), sk.CAFile, safefile.Public)
	}
	add("audit.anchor.headers_file", c.Audit.Anchor.HeadersFile, safefile.Secret)
	add("audit.anchor.url_file", c.Audit.Anchor.URLFile, safefile.Secret)
	add("audit.anchor.ca_file", c.Audit.Anchor.CAFile, safefile.Public)
	add("notify.slack.webhook_url_file", c.Notify.Slack.WebhookURLFile, safefile.Secret)
	add("notify.teams.webhook_url_file", c.Notify.Teams.WebhookURLFile, safefile.Secret)
	return out
}
