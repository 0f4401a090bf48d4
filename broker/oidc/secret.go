package oidc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/pamctl/pamctl/broker/safefile"
)

// maxSecretFile bounds a client secret file: secrets are tens of bytes.
const maxSecretFile = 4 << 10

// ExpandHome turns a leading "~/" into the user's home directory, so one
// issuers: entry can name a per-user path such as
// ~/.config/pamctl/google-client-secret.
func ExpandHome(path string) (string, error) {
	if path != "~" && !strings.HasPrefix(path, "~/") {
		return path, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("expand %s: %w", path, err)
	}
	return filepath.Join(home, strings.TrimPrefix(path, "~")), nil
}

// ReadClientSecretFile reads an OAuth client secret for `pamctl login`. It
// refuses a file that group or others may read or write (the error gives the
// chmod that fixes it), an empty file and anything that is not a regular
// file. Surrounding whitespace is dropped. Errors never contain the secret.
func ReadClientSecretFile(path string) (string, error) {
	if path == "" {
		return "", errors.New("oidc: client secret file: no path")
	}
	p, err := ExpandHome(path)
	if err != nil {
		return "", fmt.Errorf("oidc: client secret file: %w", err)
	}
	f, err := safefile.Open(p) // never blocks on a FIFO or opens a device
	if err != nil {
		if errors.Is(err, safefile.ErrNotRegular) {
			return "", fmt.Errorf("oidc: client secret file %s is not a regular file", p)
		}
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("oidc: client secret file %s does not exist: this issuer needs the OAuth client secret on this machine; ask your administrator for it, write it there and run chmod 600 %s", p, p)
		}
		return "", fmt.Errorf("oidc: client secret file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("oidc: client secret file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("oidc: client secret file %s is not a regular file", p)
	}
	// Windows has no Unix permission bits; its ACLs are the user's profile's.
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("oidc: client secret file %s is accessible by group or others (mode %04o): run chmod 600 %s", p, st.Mode().Perm(), p)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", fmt.Errorf("oidc: client secret file: %w", err)
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("oidc: client secret file %s is larger than %d bytes: it should hold only the secret", p, maxSecretFile)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("oidc: client secret file %s is empty", p)
	}
	if strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("oidc: client secret file %s has more than one line: it should hold only the secret", p)
	}
	return s, nil
}
