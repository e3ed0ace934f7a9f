package policy

import (
	"strings"
)

// NormalizeHost lower-cases a DNS host name and drops one trailing dot. It
// refuses anything that is not a plain host name: ports, userinfo, brackets,
// empty labels, characters outside [a-z0-9-.] (and '*' only as a whole
// leading label when allowWildcard is set).
func NormalizeHost(h string, allowWildcard bool) (string, error) {
	h = strings.ToLower(strings.TrimSpace(h))
	h = strings.TrimSuffix(h, ".")
	if h == "" {
		return "", Errorf(ClassInvalidRequest, "empty host name")
	}
	if len(h) > 253 {
		return "", Errorf(ClassInvalidRequest, "host name longer than 253 characters")
	}
	labels := strings.Split(h, ".")
	for i, l := range labels {
		if l == "*" && i == 0 && allowWildcard && len(labels) >= 3 {
			continue
		}
		if l == "" || len(l) > 63 {
			return "", Errorf(ClassInvalidRequest, "host %q has an empty or overlong label", h)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", Errorf(ClassInvalidRequest, "host %q contains %q; give a plain DNS name (no scheme, port, path or wildcard)", h, c)
			}
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "", Errorf(ClassInvalidRequest, "host %q has a label starting or ending with '-'", h)
		}
	}
	return h, nil
}

// MatchHostPattern reports whether host (already normalised) matches pattern:
// an exact name, or "*.suffix" matching exactly one or more labels before
// ".suffix" at a dot boundary. The apex ("suffix" itself) never matches a
// wildcard, and look-alikes such as "suffix.evil.test" never match.
func MatchHostPattern(pattern, host string) bool {
	pattern = strings.TrimSuffix(strings.ToLower(pattern), ".")
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" || pattern == "" {
		return false
	}
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		if !strings.HasSuffix(host, "."+rest) {
			return false
		}
		prefix := strings.TrimSuffix(host, "."+rest)
		return prefix != "" && !strings.Contains(prefix, "*")
	}
	return pattern == host
}

// IsWildcardHost reports whether a pattern is a "*." wildcard.
func IsWildcardHost(pattern string) bool { return strings.HasPrefix(pattern, "*.") }
