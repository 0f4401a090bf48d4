package mask

import "regexp/syntax"

// MinMatchLen is the fewest characters a match of pattern can span: 0
// when it can match the empty string anywhere (\b, ^, $, a*, (?:), a|),
// which neither a rule nor a custom detector may. A pattern that never
// matches counts as long; one that does not parse as 0.
func MinMatchLen(pattern string) int {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return 0
	}
	return minLen(re.Simplify())
}

const neverMatches = 1 << 30

func minLen(re *syntax.Regexp) int {
	switch re.Op {
	case syntax.OpNoMatch:
		return neverMatches
	case syntax.OpLiteral:
		return len(re.Rune)
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return 1
	case syntax.OpCapture, syntax.OpPlus:
		return minLen(re.Sub[0])
	case syntax.OpRepeat:
		return min(neverMatches, re.Min*minLen(re.Sub[0]))
	case syntax.OpConcat:
		n := 0
		for _, sub := range re.Sub {
			n = min(neverMatches, n+minLen(sub))
		}
		return n
	case syntax.OpAlternate:
		n := neverMatches
		for _, sub := range re.Sub {
			n = min(n, minLen(sub))
		}
		return n
	}
	// OpEmptyMatch, OpStar, OpQuest and the zero-width assertions
	// (OpBeginLine, OpEndLine, OpBeginText, OpEndText, OpWordBoundary,
	// OpNoWordBoundary).
	return 0
}
