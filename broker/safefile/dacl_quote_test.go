package safefile

import (
	"strings"
	"testing"
)

// psSingleQuoted reads s as PowerShell's tokenizer reads a single-quoted
// string at its start: it runs to the next single-quote character
// (', or U+2018, U+2019, U+201A, U+201B) not doubled; two in a row are
// the second one. It returns the text and what follows the string.
func psSingleQuoted(t *testing.T, s string) (string, string) {
	t.Helper()
	isQ := func(r rune) bool { return strings.ContainsRune("'\u2018\u2019\u201a\u201b", r) }
	rs := []rune(s)
	if len(rs) == 0 || !isQ(rs[0]) {
		t.Fatalf("%q does not start with a single quote", s)
	}
	var b strings.Builder
	for i := 1; i < len(rs); i++ {
		if isQ(rs[i]) {
			if i+1 < len(rs) && isQ(rs[i+1]) {
				b.WriteRune(rs[i+1])
				i++
				continue
			}
			return b.String(), string(rs[i+1:])
		}
		b.WriteRune(rs[i])
	}
	t.Fatalf("unterminated single-quoted string in %q", s)
	return "", ""
}

// The icacls command a refusal shows is run in cmd or PowerShell
// (docs/deployment.md). Inside double quotes PowerShell expands $(…),
// $var and backtick escapes (and takes “ ” „ for double quotes), cmd
// expands %VAR% (and !VAR! with delayed expansion): all legal in NTFS
// names. A path holding one is shown in PowerShell's single quotes
// (single quotes doubled, U+2018–U+201B too), the command marked as
// PowerShell's; any other path in double quotes, as before, for either
// shell.
func TestICACLSQuotesThePathForTheShell(t *testing.T) {
	for _, tc := range []struct {
		path string
		ps   bool
	}{
		{`C:\pamctl data`, false},
		{`C:\it's here`, false},
		{`C:\a&b^c(1)`, false},
		{`C:\a$(Remove-Item -Recurse C:\x)`, true},
		{`C:\a$env:TEMP`, true},
		{"C:\\a`$b", true},
		{`C:\a%PATH%b`, true},
		{`C:\a!PATH!b`, true},
		{"C:\\a\u201c; calc; \u201d", true},
		{"C:\\a\u201e$x", true},
		{`C:\it's $(calc)`, true},
		{"C:\\a\u2019$(calc)\u2018x\u201a\u201b", true},
	} {
		for _, dir := range []bool{false, true} {
			fix := icaclsFix(tc.path, tUser, dir, false, []string{tAuthUsers})
			owner, _ := judgeACL(&descriptor{Owner: tBob}, "", tc.path, aclFile, fileChangeRights, "writable", showSID)
			for _, f := range []string{fix, owner.fix} {
				// from the first backtick to the last: the path may hold one
				i, j := strings.Index(f, "`"), strings.LastIndex(f, "`")
				if i < 0 || j <= i {
					t.Fatalf("%q: no command in %s", tc.path, f)
				}
				cmd := f[i+1 : j]
				if !strings.HasPrefix(cmd, "icacls ") {
					t.Fatalf("%q: no command in %s", tc.path, f)
				}
				arg := strings.TrimPrefix(cmd, "icacls ")
				if !tc.ps {
					if !strings.HasPrefix(arg, `"`+tc.path+`" `) || strings.Contains(f, "PowerShell") {
						t.Errorf("%q: want the path in double quotes for either shell: %s", tc.path, f)
					}
					continue
				}
				got, rest := psSingleQuoted(t, arg)
				if got != tc.path || !strings.HasPrefix(rest, " /") {
					t.Errorf("%q: PowerShell reads the path as %q (then %q): %s", tc.path, got, rest, f)
				}
				if !strings.Contains(f, "PowerShell") {
					t.Errorf("%q: the command is not marked as PowerShell's: %s", tc.path, f)
				}
				if strings.Contains(rest, "%USERNAME%") {
					t.Errorf("%q: a PowerShell command names cmd's %%USERNAME%%: %s", tc.path, f)
				}
			}
		}
	}
}
