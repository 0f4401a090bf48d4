package cli

import (
	"strings"
	"testing"
)

// A value brought in by a YAML merge key (<<) that YAML would silently
// drop is refused with both lines, like a duplicate key.
func TestMergeKeyOverlapRefused(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"list written before the merge",
			"rules: [{name: a, pattern: x, action: deny}]\n<<: {rules: [{name: b, pattern: y, action: deny}]}\n",
			`line 1: key "rules" is written here and also brought in by the merge key (<<) on line 2 (from line 2)`},
		{"nested mapping written before the merge",
			"masking: {response: {default: mask}, <<: {response: {default: off}}}\n",
			`line 1: masking: key "response" is written here and also brought in by the merge key (<<) on line 1`},
		{"list written after the merge",
			"<<: {rules: [{name: b, pattern: y, action: deny}]}\nrules: [{name: a, pattern: x, action: deny}]\n",
			`line 2: key "rules" replaces the list brought in by the merge key (<<) on line 1 (from line 1) whole`},
		{"mapping written after the merge, block style",
			"masking:\n  <<:\n    response:\n      default: off\n  response:\n    default: mask\n",
			`line 5: masking: key "response" replaces the mapping brought in by the merge key (<<) on line 2 (from line 3) whole`},
		{"scalar written before the merge",
			"audit:\n  retention: 30d\n  <<: {retention: 0s}\n",
			`line 2: audit: key "retention" is written here and also brought in by the merge key (<<) on line 3`},
		{"in a list entry, case folded",
			"upstreams:\n  - &up { name: a, url: 'https://x.example/v1', key: a }\n  - { Name: b, <<: *up }\n",
			`upstreams[1]: key "Name" is written here and also brought in by the merge key (<<) on line 3 (from line 2)`},
		{"two merge sources",
			"upstreams:\n  - &a { name: a, url: 'https://x.example/v1', key: a }\n  - &b { name: b, url: 'https://y.example/v1', key: b }\n  - { <<: [*a, *b], name: c }\n",
			`line 4: upstreams[2]: key "url" is brought in twice by merge keys (<<), from line 2 and line 3`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig(writeConfig(t, tc.body), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// Merge keys without a dropped value keep working: disjoint keys, and the
// template idiom of a single value overriding a merged single value
// written after the << line.
func TestMergeKeyWithoutOverlapAccepted(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, `
upstreams:
  - &up { name: a, url: 'https://x.example/v1', key: a }
  - { <<: *up, name: b }
  - <<: *up
    name: c
    key: c
masking:
  <<: { prompt: { default: mask } }
  response: { default: off }
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Upstreams) != 3 || cfg.Upstreams[1].Name != "b" || cfg.Upstreams[2].Key != "c" || cfg.Upstreams[2].URL != "https://x.example/v1" {
		t.Fatalf("upstreams: %+v", cfg.Upstreams)
	}
	if cfg.Masking.Prompt.Default != "mask" || cfg.Masking.Response.Default != "off" {
		t.Fatalf("masking: %+v", cfg.Masking)
	}
}
