package payload

// The JSON grammar both scanners share: the validator over the request's
// bytes, jscan over strings on the fast paths.

// skipWS returns the index of the first byte at or after i that is not
// JSON whitespace.
func skipWS[T ~string | ~[]byte](s T, i int) int {
	for i < len(s) {
		switch s[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanNumber scans the number token at s[i:] (RFC 8259) and returns where
// it ends and whether it has no fraction or exponent; ok is false when it
// is not a number.
func scanNumber[T ~string | ~[]byte](s T, i int) (end int, integer, ok bool) {
	digits := func() bool {
		start := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		return i > start
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case !digits():
		return i, false, false
	}
	integer = true
	if i < len(s) && s[i] == '.' {
		integer = false
		i++
		if !digits() {
			return i, false, false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		integer = false
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if !digits() {
			return i, false, false
		}
	}
	return i, integer, true
}
