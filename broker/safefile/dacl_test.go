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
		t      aclTarget
		rights uint32
		who    string // "" when no problem
	}{
		{"profile file, change", private, aclFile, fileChangeRights, ""},
		{"profile file, read", private, aclFile, readRights, ""},
		{"profile dir, private", private, aclOwnDir, fileAllAccessOthers, ""},
		{"folder under C:\\, change", underRoot, aclWayDir, dirChangeRights, "writable by <S-1-5-11>"},
		{"file under C:\\, change", underRoot, aclFile, fileChangeRights, "writable by <S-1-5-11>"},
		{"file under C:\\, read", underRoot, aclFile, readRights, "writable by <S-1-5-32-545>, <S-1-5-11>"},
		{"C:\\ on the way", root, aclWayDir, dirChangeRights, ""},
		{"C:\\ as a data dir", root, aclOwnDir, fileAllAccessOthers, "writable by <S-1-5-32-545>, <S-1-5-11>"},
		{"ProgramData key, change", programDataKey, aclFile, fileChangeRights, ""},
		{"ProgramData key, read", programDataKey, aclFile, readRights, "writable by <S-1-5-32-545>"},
		{"ProgramData dir on the way", programDataDir, aclWayDir, dirChangeRights, ""},
		{"ProgramData dir as pamctl's own", programDataDir, aclOwnDir, ownDirChangeRights, "writable by <S-1-5-32-545>"},
		{"owned by another user", &descriptor{Owner: tBob, ACEs: private.ACEs}, aclFile, fileChangeRights, "owned by <" + tBob + ">"},
		{"owner rights of another owner", &descriptor{Owner: tBob, ACEs: []ace{{aceAllowed, 0, tFull, sidOwnerRights}}}, aclFile, fileChangeRights, "owned by <" + tBob + ">"},
		{"owner rights of pamctl's user", &descriptor{Owner: tUser, ACEs: []ace{{aceAllowed, 0, tFull, sidOwnerRights}}}, aclFile, fileAllAccessOthers, ""},
		{"NULL DACL", &descriptor{Owner: tUser, NoDACL: true}, aclFile, fileChangeRights, "writable by <S-1-1-0>"},
		{"generic write to everyone", &descriptor{Owner: tUser, ACEs: []ace{{aceAllowed, 0, genericWrite, sidEveryone}}}, aclFile, fileChangeRights, "writable by <S-1-1-0>"},
		{"generic read to everyone", &descriptor{Owner: tUser, ACEs: []ace{{aceAllowed, 0, genericRead, sidEveryone}}}, aclFile, readRights, "writable by <S-1-1-0>"},
		{"write DAC to bob", &descriptor{Owner: tUser, ACEs: []ace{{aceAllowed, 0, writeDAC, tBob}}}, aclFile, fileChangeRights, "writable by <" + tBob + ">"},
		{"delete child to users", &descriptor{Owner: tUser, ACEs: []ace{{aceAllowed, 0, fileDeleteChild, tUsers}}}, aclWayDir, dirChangeRights, "writable by <S-1-5-32-545>"},
		{"callback allow to bob", &descriptor{Owner: tUser, ACEs: []ace{{aceAllowedCallback, 0, tModify, tBob}}}, aclFile, fileChangeRights, "writable by <" + tBob + ">"},
		// A deny entry is not subtracted (refusing errs safe), an
		// inherit-only one applies to children, CREATOR OWNER to no one.
		{"denied then allowed", &descriptor{Owner: tUser, ACEs: []ace{{aceDenied, 0, tFull, tBob}, {aceAllowed, 0, tFull, tBob}}}, aclFile, fileChangeRights, "writable by <" + tBob + ">"},
		{"only denied", &descriptor{Owner: tUser, ACEs: []ace{{aceDenied, 0, tFull, sidEveryone}}}, aclFile, fileAllAccessOthers, ""},
		{"inherit-only, on the way", &descriptor{Owner: tUser, ACEs: []ace{{aceAllowed, tOICI | aceInheritOnly, tFull, sidEveryone}}}, aclWayDir, dirChangeRights, ""},
		{"inherit-only, on a file", &descriptor{Owner: tUser, ACEs: []ace{{aceAllowed, tOICI | aceInheritOnly, tFull, sidEveryone}}}, aclFile, fileAllAccessOthers, ""},
		{"creator owner", &descriptor{Owner: tUser, ACEs: []ace{{aceAllowed, 0, tFull, sidCreatorOwner}}}, aclFile, fileAllAccessOthers, ""},
		// Attributes and the right to read the DACL are no access to the content.
		{"read attributes", &descriptor{Owner: tUser, ACEs: []ace{{aceAllowed, 0, 0x80 | 0x20000 | 0x100000, sidEveryone}}}, aclFile, fileAllAccessOthers, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := judgeACL(tc.d, tUser, `C:\x`, tc.t, tc.rights, "writable", showSID)
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
	if _, err := judgeACL(obj, tUser, `C:\x`, aclFile, fileChangeRights, "writable", showSID); err == nil {
		t.Fatal("an object ACE was judged")
	}
	// Nothing is trusted as pamctl's user when its SID is unknown.
	if p, _ := judgeACL(private, "", `C:\x`, aclFile, fileChangeRights, "writable", showSID); p == nil || !strings.Contains(p.who, "owned by") {
		t.Fatalf("with no SID for pamctl's user, its own file passed: %+v", p)
	}
}

// The fix names the path, removes inheritance, grants full control to
// pamctl's user (by its SID: %USERNAME% is cmd's alone, and need not name
// the account pamctl runs as) and the trusted accounts only (inherited
// by what a directory holds) and removes each SID found.
func TestICACLSFix(t *testing.T) {
	d := &descriptor{Owner: tUser, ACEs: []ace{{aceAllowed, 0, tModify, tAuthUsers}, {aceAllowed, 0, tRX, tUsers}}}
	p, err := judgeACL(d, tUser, `C:\pamctl data`, aclOwnDir, fileAllAccessOthers, "accessible", showSID)
	if err != nil || p == nil {
		t.Fatal(p, err)
	}
	want := "`icacls \"C:\\pamctl data\" /inheritance:r /grant:r \"*" + tUser + ":(OI)(CI)F\" \"*S-1-5-18:(OI)(CI)F\" \"*S-1-5-32-544:(OI)(CI)F\" /remove:g *S-1-5-11 *S-1-5-32-545`"
	if p.fix != want {
		t.Fatalf("fix\n got %s\nwant %s", p.fix, want)
	}
	p, _ = judgeACL(&descriptor{Owner: tUser, NoDACL: true}, tUser, `C:\k`, aclFile, fileChangeRights, "writable", showSID)
	if want := "`icacls \"C:\\k\" /inheritance:r /grant:r \"*" + tUser + ":F\" \"*S-1-5-18:F\" \"*S-1-5-32-544:F\"`"; p.fix != want {
		t.Fatalf("fix for a NULL DACL\n got %s\nwant %s", p.fix, want)
	}
	p, _ = judgeACL(&descriptor{Owner: tBob}, tUser, `C:\k`, aclFile, fileChangeRights, "writable", showSID)
	if !strings.Contains(p.fix, `/setowner "*`+tUser+`"`) {
		t.Fatalf("fix for another owner: %s", p.fix)
	}
	// No SID read for pamctl's user (then nothing of its own passes):
	// the fix can only name the logged-on user.
	p, _ = judgeACL(&descriptor{Owner: tBob}, "", `C:\k`, aclFile, fileChangeRights, "writable", showSID)
	if !strings.Contains(p.fix, `/setowner "%USERNAME%"`) {
		t.Fatalf("fix for another owner, no SID: %s", p.fix)
	}
	for _, fix := range []string{want, p.fix} {
		if strings.Contains(fix, "%USERNAME%") && strings.Contains(fix, tUser) {
			t.Fatalf("fix names both: %s", fix)
		}
	}
}

// A directory pamctl keeps its files in (the data dir: CheckPrivate,
// CheckOwner) is judged with what it passes on: pamctl creates the
// database, spool, audit segment and admin socket there with plain
// os.OpenFile / net.Listen, so they inherit every (OI) or (CI) entry,
// inherit-only or not (review r2 M1). CREATOR OWNER stays skipped (it
// becomes an entry for the file's creator, pamctl); CREATOR GROUP does
// not (it becomes one for the creator's primary group). The same
// entries on a directory on the way pass: what it passes on reaches only
// names created later, each judged as it is met. The fix removes them,
// naming the SID.
func TestOwnDirCountsWhatItPassesOn(t *testing.T) {
	for name, flags := range map[string]uint8{
		"object inherit, inherit-only":                aceObjectInherit | aceInheritOnly, // (OI)(IO): every file created in it
		"object+container, inherit-only":              tOICI | aceInheritOnly,            // (OI)(CI)(IO)
		"container inherit, inherit-only":             aceContainerInherit | aceInheritOnly,
		"object inherit, no propagate, inherit-only":  aceObjectInherit | 0x4 | aceInheritOnly, // (OI)(NP)(IO): files directly in it
		"object+container, inherit-only, inherited":   tOICI | aceInheritOnly | tInh,
		"object inherit, applying to the dir as well": aceObjectInherit,
	} {
		d := &descriptor{Owner: tUser, ACEs: []ace{
			{aceAllowed, tOICI, tFull, tUser}, {aceAllowed, tOICI, tFull, sidSystem},
			{aceAllowed, flags, tFull, tUsers},
		}}
		for rule, r := range map[string]func(bool) (aclTarget, uint32){"CheckPrivate": privateRule, "CheckOwner": ownerRule} {
			target, rights := r(true)
			p, err := judgeACL(d, tUser, `C:\pamctl`, target, rights, "accessible", showSID)
			if err != nil {
				t.Fatal(err)
			}
			if p == nil {
				t.Errorf("%s, %s: a data dir passing Users full control to everything created in it passed", name, rule)
				continue
			}
			if !strings.Contains(p.who, "<"+tUsers+">") || !strings.Contains(p.fix, "/remove:g *"+tUsers) {
				t.Errorf("%s, %s: %s; fix %s", name, rule, p.who, p.fix)
			}
		}
		if flags&aceInheritOnly != 0 {
			if p, _ := judgeACL(d, tUser, `C:\pamctl`, aclWayDir, dirChangeRights, "writable", showSID); p != nil {
				t.Errorf("%s: on the way: %s", name, p.who)
			}
		}
	}
	// Write access passed on is CheckOwner's business too: Users
	// could change the database pamctl creates there.
	for _, mask := range []uint32{fileWriteData, fileAppendData, genericWrite, accessDelete, writeDAC, fileWriteAttributes} {
		d := &descriptor{Owner: tUser, ACEs: []ace{{aceAllowed, aceObjectInherit | aceInheritOnly, mask, tUsers}}}
		target, rights := ownerRule(true)
		if p, _ := judgeACL(d, tUser, `C:\pamctl`, target, rights, "writable", showSID); p == nil {
			t.Errorf("CheckOwner passed a data dir passing on %#x to Users", mask)
		}
	}
	// Read access passed on is CheckPrivate's, not CheckOwner's.
	readOnly := &descriptor{Owner: tUser, ACEs: []ace{{aceAllowed, aceObjectInherit | aceInheritOnly, tRX, tUsers}}}
	if target, rights := ownerRule(true); mustJudge(t, readOnly, target, rights) != nil {
		t.Error("CheckOwner refused a data dir passing on read access")
	}
	if target, rights := privateRule(true); mustJudge(t, readOnly, target, rights) == nil {
		t.Error("CheckPrivate passed a data dir passing on read access")
	}
	// CREATOR OWNER becomes pamctl's user on what pamctl creates;
	// CREATOR GROUP its primary group, others.
	creator := &descriptor{Owner: tUser, ACEs: []ace{{aceAllowed, tOICI | aceInheritOnly, genericAll, sidCreatorOwner}}}
	if target, rights := privateRule(true); mustJudge(t, creator, target, rights) != nil {
		t.Error("CheckPrivate refused a data dir passing on CREATOR OWNER")
	}
	creatorGroup := &descriptor{Owner: tUser, ACEs: []ace{{aceAllowed, tOICI | aceInheritOnly, genericAll, "S-1-3-1"}}}
	if target, rights := privateRule(true); mustJudge(t, creatorGroup, target, rights) == nil {
		t.Error("CheckPrivate passed a data dir passing on CREATOR GROUP")
	}
	// Files pass nothing on: an inherit-only entry on one is inert.
	if target, rights := privateRule(false); mustJudge(t, creatorGroup, target, rights) != nil {
		t.Error("CheckPrivate refused a file for an inherit-only entry")
	}
}

func mustJudge(t *testing.T, d *descriptor, target aclTarget, rights uint32) *aclProblem {
	t.Helper()
	p, err := judgeACL(d, tUser, `C:\x`, target, rights, "writable", showSID)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// FILE_WRITE_ATTRIBUTES (0x100) alone lets its holder set or replace a
// reparse point (MS-FSA 2.1.5.10.37 FSCTL_SET_REPARSE_POINT: "If
// (Open.GrantedAccess & (FILE_WRITE_DATA | FILE_WRITE_ATTRIBUTES)) == 0,
// the operation MUST be failed with STATUS_ACCESS_DENIED"); a mount point
// (junction) needs no privilege. So a junction on the way, or a file,
// that others hold WA (or WEA) on is theirs to change (review r2 M3).
// Directories on the way are not judged for them: C:\ProgramData gives
// Users (CI)(WD,AD,WEA,WA), and every folder under it would be refused.
func TestWriteAttributesChangeAFileOrJunction(t *testing.T) {
	for _, mask := range []uint32{fileWriteAttributes, fileWriteEA} {
		d := &descriptor{Owner: tUser, ACEs: []ace{{aceAllowed, 0, tFull, tUser}, {aceAllowed, 0, mask, tUsers}}}
		if mustJudge(t, d, aclFile, fileChangeRights) == nil {
			t.Errorf("a junction or file others hold %#x on passed linkRefusal's and judgeFile's rule", mask)
		}
		if mustJudge(t, d, aclFile, fileAllAccessOthers) == nil {
			t.Errorf("a private file others hold %#x on passed CheckPrivate's rule", mask)
		}
		if p := mustJudge(t, d, aclWayDir, dirChangeRights); p != nil {
			t.Errorf("a directory on the way others hold %#x on was refused: %s", mask, p.who)
		}
	}
	programData := &descriptor{Owner: sidSystem, ACEs: []ace{
		{aceAllowed, tOICI, tFull, sidSystem}, {aceAllowed, tOICI, tFull, sidAdministrators},
		{aceAllowed, tOICI, tRX, tUsers}, {aceAllowed, aceContainerInherit, fileWriteData | fileAppendData | fileWriteEA | fileWriteAttributes, tUsers},
		{aceAllowed, tOICI | aceInheritOnly, genericAll, sidCreatorOwner},
	}}
	if p := mustJudge(t, programData, aclWayDir, dirChangeRights); p != nil {
		t.Errorf("C:\\ProgramData on the way: %s", p.who)
	}
}

// Executing a file reads it (FILE_EXECUTE, GENERIC_EXECUTE): a secret
// others may execute is readable by them, and a private file or
// directory others may execute or traverse is not private (review r2 L4).
func TestExecuteIsAccess(t *testing.T) {
	for _, mask := range []uint32{fileExecute, genericExecute} {
		d := &descriptor{Owner: tUser, ACEs: []ace{{aceAllowed, 0, mask, tUsers}}}
		if mustJudge(t, d, aclFile, readRights) == nil {
			t.Errorf("a secret others may execute (%#x) was not readable", mask)
		}
		for _, dir := range []bool{false, true} {
			if target, rights := privateRule(dir); mustJudge(t, d, target, rights) == nil {
				t.Errorf("dir %v: others with %#x passed CheckPrivate's rule", dir, mask)
			}
		}
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

// The path walk follows what points elsewhere: a symlink; on Windows a
// name-surrogate reparse point (a junction: Go reports it irregular and
// not a directory), and only those (review r2 L7): a reparse point of
// another kind, irregular too, is the file or directory it is (a OneDrive
// placeholder file was followed, os.Readlink failed, and it was refused).
func TestRedirects(t *testing.T) {
	const (
		tagSymlink    = 0xA000000C // IO_REPARSE_TAG_SYMLINK
		tagMountPoint = 0xA0000003 // IO_REPARSE_TAG_MOUNT_POINT (a junction)
		tagCloud      = 0x9000001A // IO_REPARSE_TAG_CLOUD_1 (OneDrive)
		tagWOF        = 0x80000017 // IO_REPARSE_TAG_WOF (a compressed file)
		tagAppExec    = 0x8000001B // IO_REPARSE_TAG_APPEXECLINK
	)
	for _, tc := range []struct {
		m    os.FileMode
		tag  uint32
		want bool
	}{
		{os.ModeSymlink | 0o777, 0, true},
		{os.ModeSymlink | 0o666, tagSymlink, true},
		{os.ModeIrregular | 0o666, tagMountPoint, true},
		{os.ModeIrregular | 0o666, 0xA0000027, true}, // another name surrogate: followed (os.Readlink then refuses what it cannot read)
		{os.ModeIrregular | 0o666, tagCloud, false},
		{os.ModeIrregular | 0o666, tagWOF, false},
		{os.ModeIrregular | 0o666, tagAppExec, false},
		{os.ModeIrregular | 0o666, 0, false}, // dragonfly, solaris, aix: an unknown type of file, not a link
		{os.ModeIrregular | os.ModeDir | 0o777, tagCloud, false},
		{os.ModeDir | 0o777, 0, false},
		{0o666, 0, false},
		{os.ModeSocket | 0o666, 0x80000023, false}, // IO_REPARSE_TAG_AF_UNIX
	} {
		if got := redirects(tc.m, tc.tag); got != tc.want {
			t.Errorf("redirects(%v, %#x) = %v, want %v", tc.m, tc.tag, got, tc.want)
		}
	}
}
