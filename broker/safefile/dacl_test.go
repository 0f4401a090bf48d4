package safefile

import (
	"os"
	"strings"
	"testing"
)

// SIDs of the layouts below.
const (
	tUser      = "S-1-5-21-1004336348-1177238915-682003330-1001" // pamctl's user
	tBob       = "S-1-5-21-1004336348-1177238915-682003330-1002" // another user of the host
	tUsers     = "S-1-5-32-545"
	tAuthUsers = "S-1-5-11"
	// Rights as icacls shows them.
	tFull   = 0x1f01ff // F
	tModify = 0x1301bf // M
	tRX     = 0x1200a9 // RX
	tOICI   = 0x3
	tInh    = 0x10 // INHERITED_ACE
)

func showSID(s string) string { return "<" + s + ">" }

// The DACL rules Windows uses, judged here on every OS over the layouts a
// Windows laptop has: the user's profile (private), C:\ and what a new
// folder under it inherits (everyone may modify), C:\ProgramData (users
// may add files), a file another user owns, a NULL DACL, and entries the
// rules must skip (deny, inherit-only, CREATOR OWNER) or cannot read.
func TestJudgeACL(t *testing.T) {
	private := &descriptor{Owner: tUser, ACEs: []ace{
		{aceAllowed, tInh, tFull, tUser}, {aceAllowed, tInh, tFull, sidSystem}, {aceAllowed, tInh, tFull, sidAdministrators},
	}}
	// C:\pamctl made by hand: inherits C:\'s Authenticated Users: M and Users: RX.
	underRoot := &descriptor{Owner: tUser, ACEs: []ace{
		{aceAllowed, tInh | tOICI, tFull, sidAdministrators}, {aceAllowed, tInh | tOICI, tFull, sidSystem},
		{aceAllowed, tInh | tOICI, tRX, tUsers}, {aceAllowed, tInh | tOICI, tModify, tAuthUsers},
	}}
	// C:\ itself: Authenticated Users may create folders in it (AD) and
	// modify what is below it (inherit-only), Users read it.
	root := &descriptor{Owner: sidTrustedInstaller, ACEs: []ace{
		{aceAllowed, tOICI, tFull, sidAdministrators}, {aceAllowed, tOICI, tFull, sidSystem},
		{aceAllowed, tOICI, tRX, tUsers}, {aceAllowed, tOICI | aceInheritOnly, tModify, tAuthUsers},
		{aceAllowed, 0, fileAppendData, tAuthUsers},
	}}
	// A key under C:\ProgramData\pamctl: users may read it, and add files
	// to its directory.
	programDataKey := &descriptor{Owner: sidAdministrators, ACEs: []ace{
		{aceAllowed, tInh, tFull, sidSystem}, {aceAllowed, tInh, tFull, sidAdministrators}, {aceAllowed, tInh, tRX, tUsers},
	}}
	programDataDir := &descriptor{Owner: sidAdministrators, ACEs: []ace{
		{aceAllowed, tInh | tOICI, tFull, sidSystem}, {aceAllowed, tInh | tOICI, tFull, sidAdministrators},
		{aceAllowed, tInh | tOICI, tRX, tUsers}, {aceAllowed, tInh | 0x2, fileWriteData | fileAppendData, tUsers},
		{aceAllowed, tInh | tOICI | aceInheritOnly, genericAll, sidCreatorOwner},
	}}
	for _, tc := range []struct {
		name   string
		d      *descriptor
		dir    bool
		rights uint32
		who    string // "" when no problem
	}{
		{"profile file, change", private, false, fileChangeRights, ""},
		{"profile file, read", private, false, readRights, ""},
		{"profile dir, private", private, true, fileAllAccessOthers, ""},
		{"folder under C:\\, change", underRoot, true, dirChangeRights, "writable by <S-1-5-11>"},
		{"file under C:\\, change", underRoot, false, fileChangeRights, "writable by <S-1-5-11>"},
		{"file under C:\\, read", underRoot, false, readRights, "writable by <S-1-5-32-545>, <S-1-5-11>"},
		{"C:\\ on the way", root, true, dirChangeRights, ""},
		{"C:\\ as a data dir", root, true, fileAllAccessOthers, "writable by <S-1-5-32-545>, <S-1-5-11>"},
		{"ProgramData key, change", programDataKey, false, fileChangeRights, ""},
		{"ProgramData key, read", programDataKey, false, readRights, "writable by <S-1-5-32-545>"},
		{"ProgramData dir on the way", programDataDir, true, dirChangeRights, ""},
		{"ProgramData dir as pamctl's own", programDataDir, true, dirChangeRights | fileWriteData | fileAppendData, "writable by <S-1-5-32-545>"},
		{"owned by another user", &descriptor{Owner: tBob, ACEs: private.ACEs}, false, fileChangeRights, "owned by <" + tBob + ">"},
		{"owner rights of another owner", &descriptor{Owner: tBob, ACEs: []ace{{aceAllowed, 0, tFull, sidOwnerRights}}}, false, fileChangeRights, "owned by <" + tBob + ">"},
		{"owner rights of pamctl's user", &descriptor{Owner: tUser, ACEs: []ace{{aceAllowed, 0, tFull, sidOwnerRights}}}, false, fileAllAccessOthers, ""},
		{"NULL DACL", &descriptor{Owner: tUser, NoDACL: true}, false, fileChangeRights, "writable by <S-1-1-0>"},
		{"generic write to everyone", &descriptor{Owner: tUser, ACEs: []ace{{aceAllowed, 0, genericWrite, sidEveryone}}}, false, fileChangeRights, "writable by <S-1-1-0>"},
		{"generic read to everyone", &descriptor{Owner: tUser, ACEs: []ace{{aceAllowed, 0, genericRead, sidEveryone}}}, false, readRights, "writable by <S-1-1-0>"},
		{"write DAC to bob", &descriptor{Owner: tUser, ACEs: []ace{{aceAllowed, 0, writeDAC, tBob}}}, false, fileChangeRights, "writable by <" + tBob + ">"},
		{"delete child to users", &descriptor{Owner: tUser, ACEs: []ace{{aceAllowed, 0, fileDeleteChild, tUsers}}}, true, dirChangeRights, "writable by <S-1-5-32-545>"},
		{"callback allow to bob", &descriptor{Owner: tUser, ACEs: []ace{{aceAllowedCallback, 0, tModify, tBob}}}, false, fileChangeRights, "writable by <" + tBob + ">"},
		// A deny entry is not subtracted (refusing errs safe), an
		// inherit-only one applies to children, CREATOR OWNER to no one.
		{"denied then allowed", &descriptor{Owner: tUser, ACEs: []ace{{aceDenied, 0, tFull, tBob}, {aceAllowed, 0, tFull, tBob}}}, false, fileChangeRights, "writable by <" + tBob + ">"},
		{"only denied", &descriptor{Owner: tUser, ACEs: []ace{{aceDenied, 0, tFull, sidEveryone}}}, false, fileAllAccessOthers, ""},
		{"inherit-only", &descriptor{Owner: tUser, ACEs: []ace{{aceAllowed, tOICI | aceInheritOnly, tFull, sidEveryone}}}, true, fileAllAccessOthers, ""},
		{"creator owner", &descriptor{Owner: tUser, ACEs: []ace{{aceAllowed, 0, tFull, sidCreatorOwner}}}, false, fileAllAccessOthers, ""},
		// Attributes and the right to read the DACL are no access to the content.
		{"read attributes", &descriptor{Owner: tUser, ACEs: []ace{{aceAllowed, 0, 0x80 | 0x20000 | 0x100000, sidEveryone}}}, false, fileAllAccessOthers, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := judgeACL(tc.d, tUser, `C:\x`, tc.dir, tc.rights, "writable", showSID)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.who == "" && p != nil:
				t.Fatalf("refused: %s (fix %s)", p.who, p.fix)
			case tc.who != "" && p == nil:
				t.Fatalf("passed, want %q", tc.who)
			case tc.who != "" && !strings.HasPrefix(p.who, tc.who):
				t.Fatalf("who = %q, want %q", p.who, tc.who)
			}
		})
	}

	// An allow entry the rules cannot read (an object ACE) is an error:
	// what cannot be judged is refused.
	obj := &descriptor{Owner: tUser, ACEs: []ace{{0x5, 0, tFull, ""}}}
	if _, err := judgeACL(obj, tUser, `C:\x`, false, fileChangeRights, "writable", showSID); err == nil {
		t.Fatal("an object ACE was judged")
	}
	// Nothing is trusted as pamctl's user when its SID is unknown.
	if p, _ := judgeACL(private, "", `C:\x`, false, fileChangeRights, "writable", showSID); p == nil || !strings.Contains(p.who, "owned by") {
		t.Fatalf("with no SID for pamctl's user, its own file passed: %+v", p)
	}
}

// The fix names the path, removes inheritance, grants full control to
// the trusted accounts only (inherited by what a directory holds) and
// removes each SID found.
func TestICACLSFix(t *testing.T) {
	d := &descriptor{Owner: tUser, ACEs: []ace{{aceAllowed, 0, tModify, tAuthUsers}, {aceAllowed, 0, tRX, tUsers}}}
	p, err := judgeACL(d, tUser, `C:\pamctl data`, true, fileAllAccessOthers, "accessible", showSID)
	if err != nil || p == nil {
		t.Fatal(p, err)
	}
	want := "`icacls \"C:\\pamctl data\" /inheritance:r /grant:r \"%USERNAME%:(OI)(CI)F\" \"*S-1-5-18:(OI)(CI)F\" \"*S-1-5-32-544:(OI)(CI)F\" /remove:g *S-1-5-11 *S-1-5-32-545`"
	if p.fix != want {
		t.Fatalf("fix\n got %s\nwant %s", p.fix, want)
	}
	p, _ = judgeACL(&descriptor{Owner: tUser, NoDACL: true}, tUser, `C:\k`, false, fileChangeRights, "writable", showSID)
	if want := "`icacls \"C:\\k\" /inheritance:r /grant:r \"%USERNAME%:F\" \"*S-1-5-18:F\" \"*S-1-5-32-544:F\"`"; p.fix != want {
		t.Fatalf("fix for a NULL DACL\n got %s\nwant %s", p.fix, want)
	}
	p, _ = judgeACL(&descriptor{Owner: tBob}, tUser, `C:\k`, false, fileChangeRights, "writable", showSID)
	if !strings.Contains(p.fix, `/setowner "%USERNAME%"`) {
		t.Fatalf("fix for another owner: %s", p.fix)
	}
}

// What pamctl creates for itself grants its user, SYSTEM and
// Administrators, nothing inherited; directories pass it on.
func TestPrivateSDDL(t *testing.T) {
	if got, want := privateSDDL(tUser, true), "D:P(A;OICI;FA;;;"+tUser+")(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"; got != want {
		t.Errorf("dir: %s, want %s", got, want)
	}
	if got, want := privateSDDL(tUser, false), "D:P(A;;FA;;;"+tUser+")(A;;FA;;;SY)(A;;FA;;;BA)"; got != want {
		t.Errorf("file: %s, want %s", got, want)
	}
}

// The path walk follows what points elsewhere (a symlink; a junction, which
// Go reports on Windows as irregular and not a directory) and walks a
// directory that is another kind of reparse point (irregular and a
// directory: a OneDrive folder) as a directory.
func TestRedirects(t *testing.T) {
	for m, want := range map[os.FileMode]bool{
		os.ModeSymlink | 0o777:                true,
		os.ModeIrregular | 0o666:              true,
		os.ModeIrregular | os.ModeDir | 0o777: false,
		os.ModeDir | 0o777:                    false,
		0o666:                                 false,
		os.ModeSocket | 0o666:                 false,
	} {
		if got := redirects(m); got != want {
			t.Errorf("redirects(%v) = %v, want %v", m, got, want)
		}
	}
}
