package policy

import (
	"net"
	"net/netip"
	"strings"
	"sync"
)

// adRange is one special-purpose block and the words used to name it.
type adRange struct {
	prefix netip.Prefix
	what   string
}

// adIPv4Ranges are the IPv4 blocks that are not globally reachable (IANA
// IPv4 Special-Purpose Address Registry, plus multicast and reserved space).
// More specific blocks come first so the message names the narrowest one.
// Built lazily so package initialisation stays trivial.
var adIPv4Ranges = sync.OnceValue(func() []adRange {
	return []adRange{
		{netip.MustParsePrefix("169.254.169.254/32"), "a cloud metadata endpoint"},
		{netip.MustParsePrefix("255.255.255.255/32"), "the limited broadcast address"},
		{netip.MustParsePrefix("0.0.0.0/8"), "in \"this network\" (0.0.0.0/8)"},
		{netip.MustParsePrefix("10.0.0.0/8"), "private"},
		{netip.MustParsePrefix("100.64.0.0/10"), "in shared address space (CGNAT, 100.64.0.0/10)"},
		{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
		{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
		{netip.MustParsePrefix("172.16.0.0/12"), "private"},
		{netip.MustParsePrefix("192.0.0.0/24"), "reserved for IETF protocol assignments"},
		{netip.MustParsePrefix("192.0.2.0/24"), "reserved for documentation"},
		{netip.MustParsePrefix("192.88.99.0/24"), "a 6to4 relay anycast address"},
		{netip.MustParsePrefix("192.168.0.0/16"), "private"},
		{netip.MustParsePrefix("198.18.0.0/15"), "reserved for benchmarking"},
		{netip.MustParsePrefix("198.51.100.0/24"), "reserved for documentation"},
		{netip.MustParsePrefix("203.0.113.0/24"), "reserved for documentation"},
		{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
		{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	}
})

// adIPv6Ranges are the IPv6 blocks that are not globally reachable (IANA
// IPv6 Special-Purpose Address Registry), and the translation/tunnel blocks
// that embed an IPv4 address we could not vouch for. Anything outside
// 2000::/3 is refused separately.
var adIPv6Ranges = sync.OnceValue(func() []adRange {
	return []adRange{
		{netip.MustParsePrefix("::/128"), "unspecified"},
		{netip.MustParsePrefix("::1/128"), "loopback"},
		{netip.MustParsePrefix("64:ff9b::/96"), "a NAT64 address (64:ff9b::/96)"},
		{netip.MustParsePrefix("64:ff9b:1::/48"), "a local-use NAT64 address (64:ff9b:1::/48)"},
		{netip.MustParsePrefix("100::/64"), "discard-only"},
		{netip.MustParsePrefix("2001::/32"), "a Teredo address"},
		{netip.MustParsePrefix("2001:db8::/32"), "reserved for documentation"},
		{netip.MustParsePrefix("2001::/23"), "reserved for IETF protocol assignments"},
		{netip.MustParsePrefix("2002::/16"), "a 6to4 address"},
		{netip.MustParsePrefix("3fff::/20"), "reserved for documentation"},
		{netip.MustParsePrefix("5f00::/16"), "an SRv6 SID (not globally reachable)"},
		{netip.MustParsePrefix("fd00:ec2::254/128"), "a cloud metadata endpoint"},
		{netip.MustParsePrefix("fc00::/7"), "unique local (private)"},
		{netip.MustParsePrefix("fe80::/10"), "link-local"},
		{netip.MustParsePrefix("fec0::/10"), "site-local"},
		{netip.MustParsePrefix("ff00::/8"), "multicast"},
	}
})

// adGlobalUnicast6 is the only IPv6 space IANA allocates for global unicast.
var adGlobalUnicast6 = sync.OnceValue(func() netip.Prefix { return netip.MustParsePrefix("2000::/3") })

// CheckAddr returns nil only when ip is a globally reachable unicast address
// that is not one of own (this machine's addresses). IPv4-mapped
// (::ffff:0:0/96) and IPv4-compatible (::/96) addresses are unwrapped and the
// embedded IPv4 address is checked. The error is a PolicyViolation naming
// the category ("address 10.0.0.1 is private").
func CheckAddr(ip netip.Addr, own []netip.Addr) error {
	if !ip.IsValid() {
		return Errorf(ClassPolicyViolation, "invalid IP address")
	}
	shown := ip.String()
	ip = ip.WithZone("")
	v4 := adEmbeddedIPv4(ip)
	refuse := func(what string) error {
		if v4 != ip {
			return Errorf(ClassPolicyViolation, "address %s (%s) is %s", shown, v4, what)
		}
		return Errorf(ClassPolicyViolation, "address %s is %s", shown, what)
	}
	if v4.Is4() {
		for _, r := range adIPv4Ranges() {
			if r.prefix.Contains(v4) {
				return refuse(r.what)
			}
		}
	} else {
		for _, r := range adIPv6Ranges() {
			if r.prefix.Contains(ip) {
				return refuse(r.what)
			}
		}
		if !adGlobalUnicast6().Contains(ip) {
			return refuse("outside IPv6 global unicast space (2000::/3)")
		}
	}
	for _, o := range own {
		if !o.IsValid() {
			continue
		}
		o = o.WithZone("")
		if adEmbeddedIPv4(o) == v4 {
			return refuse("one of this machine's own addresses")
		}
	}
	return nil
}

// adEmbeddedIPv4 returns the IPv4 address inside an IPv4-mapped
// (::ffff:a.b.c.d) or IPv4-compatible (::a.b.c.d) address, and ip itself
// otherwise. "::" and "::1" stay IPv6 so they are named as such.
func adEmbeddedIPv4(ip netip.Addr) netip.Addr {
	if ip.Is4In6() {
		return ip.Unmap()
	}
	if ip.Is6() {
		b := ip.As16()
		for _, x := range b[:12] {
			if x != 0 {
				return ip
			}
		}
		if v4 := netip.AddrFrom4([4]byte(b[12:])); v4.As4() != [4]byte{0, 0, 0, 0} && v4.As4() != [4]byte{0, 0, 0, 1} {
			return v4
		}
	}
	return ip
}

// adForbiddenNames are host names (and, with a leading ".", suffixes) that
// lead to this machine, the local network or a cloud metadata service.
func adForbiddenNames() []string {
	return []string{
		"localhost", ".localhost",
		"localhost.localdomain", ".localdomain",
		".local", ".internal", ".home.arpa", ".arpa",
		"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal",
	}
}

// CheckHostName refuses a policy host that is not a public DNS name:
// numeric IP literals in any spelling (127.0.0.1, 2130706433, 0x7f.1,
// 0177.0.0.1, 127.1, [::1], [::ffff:127.0.0.1]), names whose last label is
// numeric, single-label names, localhost and *.localhost, *.local,
// *.internal (which includes metadata.google.internal), *.home.arpa and
// other metadata names. A leading "*." wildcard label is allowed and the
// rest is checked. Syntax errors are InvalidRequest, refusals
// PolicyViolation.
func CheckHostName(host string) error {
	h := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(host)), ".")
	if h == "" {
		return Errorf(ClassInvalidRequest, "empty host name")
	}
	if adLooksLikeIPLiteral(h) {
		return Errorf(ClassPolicyViolation, "host %q is a numeric IP address; the policy host must be a DNS name", rqPrintable(h))
	}
	n, err := NormalizeHost(h, true)
	if err != nil {
		return err
	}
	n = strings.TrimPrefix(n, "*.")
	labels := strings.Split(n, ".")
	if adIsNumericLabel(labels[len(labels)-1]) {
		return Errorf(ClassPolicyViolation, "host %q ends in a numeric label; the policy host must be a DNS name", n)
	}
	for _, f := range adForbiddenNames() {
		if n == f || (strings.HasPrefix(f, ".") && strings.HasSuffix(n, f)) || "."+n == f {
			return Errorf(ClassPolicyViolation, "host %q is a local or metadata name", n)
		}
	}
	if len(labels) < 2 {
		return Errorf(ClassPolicyViolation, "host %q is a single-label name; give a fully qualified DNS name", n)
	}
	return nil
}

// adLooksLikeIPLiteral reports whether h is an IP address in any spelling a
// resolver or URL parser might accept.
func adLooksLikeIPLiteral(h string) bool {
	if strings.ContainsAny(h, "[]") {
		return true
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if strings.Contains(h, ":") {
		// Anything with a colon is not a DNS name; an IPv6 literal with a
		// zone or odd spelling lands here.
		return true
	}
	_, ok := ParseLooseIPv4(h)
	return ok
}

// adIsNumericLabel reports whether a label would be parsed as a number by
// a WHATWG URL parser (decimal digits, or 0x followed by hex digits).
func adIsNumericLabel(l string) bool {
	if l == "" {
		return false
	}
	if rest, ok := strings.CutPrefix(l, "0x"); ok {
		for i := 0; i < len(rest); i++ {
			if !rqIsHex(rest[i]) {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(l); i++ {
		if l[i] < '0' || l[i] > '9' {
			return false
		}
	}
	return true
}

// ParseLooseIPv4 parses the forms inet_aton(3) and WHATWG URL parsers accept:
// one to four dot-separated parts, each decimal, octal (leading 0) or hex
// (0x), where the last part fills the remaining bytes (127.1, 0x7f.1,
// 0177.0.0.1, 2130706433). One trailing dot is accepted.
func ParseLooseIPv4(s string) (netip.Addr, bool) {
	s = strings.TrimSuffix(s, ".")
	if s == "" {
		return netip.Addr{}, false
	}
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	nums := make([]uint64, len(parts))
	for i, p := range parts {
		v, ok := adParseLoosePart(p)
		if !ok {
			return netip.Addr{}, false
		}
		nums[i] = v
	}
	var val uint64
	for i, v := range nums[:len(nums)-1] {
		if v > 255 {
			return netip.Addr{}, false
		}
		val |= v << (24 - 8*uint(i))
	}
	last := nums[len(nums)-1]
	if last >= 1<<(8*(5-uint(len(nums)))) {
		return netip.Addr{}, false
	}
	val |= last
	return netip.AddrFrom4([4]byte{byte(val >> 24), byte(val >> 16), byte(val >> 8), byte(val)}), true
}

// adParseLoosePart parses one inet_aton part; values above 2^32 fail.
func adParseLoosePart(p string) (uint64, bool) {
	if p == "" {
		return 0, false
	}
	base := uint64(10)
	switch {
	case len(p) >= 2 && (p[:2] == "0x" || p[:2] == "0X"):
		base, p = 16, p[2:]
		if p == "" {
			return 0, true // "0x" alone is 0 for WHATWG parsers
		}
	case len(p) > 1 && p[0] == '0':
		base, p = 8, p[1:]
	}
	var v uint64
	for i := 0; i < len(p); i++ {
		c := p[i]
		var d uint64
		switch {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case base == 16 && c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		case base == 16 && c >= 'A' && c <= 'F':
			d = uint64(c-'A') + 10
		default:
			return 0, false
		}
		if d >= base {
			return 0, false
		}
		v = v*base + d
		if v > 1<<32 {
			return 0, false
		}
	}
	return v, true
}

// HostAddrs returns this machine's own interface addresses, for CheckAddr's
// own list. It returns nil when the interfaces cannot be listed.
func HostAddrs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		default:
			continue
		}
		if na, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, na.Unmap())
		}
	}
	return out
}
