package policy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestCheckAddr(t *testing.T) {
	tests := []struct {
		ip  string
		sub string // "" = allowed
	}{
		// Globally reachable.
		{"1.1.1.1", ""},
		{"8.8.8.8", ""},
		{"93.184.215.14", ""},
		{"172.15.255.255", ""},
		{"172.32.0.0", ""},
		{"100.63.255.255", ""},
		{"100.128.0.0", ""},
		{"169.253.255.255", ""},
		{"192.0.1.1", ""},
		{"198.17.255.255", ""},
		{"198.20.0.0", ""},
		{"223.255.255.255", ""},
		{"2606:4700:4700::1111", ""},
		{"2a00:1450:4001:82b::200e", ""},
		{"2001:4860:4860::8888", ""},
		{"::ffff:8.8.8.8", ""},

		// IPv4 special-purpose.
		{"0.0.0.0", "this network"},
		{"0.1.2.3", "this network"},
		{"10.0.0.1", "address 10.0.0.1 is private"},
		{"10.255.255.255", "private"},
		{"100.64.0.1", "CGNAT"},
		{"100.127.255.255", "CGNAT"},
		{"127.0.0.1", "loopback"},
		{"127.255.255.254", "loopback"},
		{"169.254.0.1", "link-local"},
		{"169.254.169.254", "cloud metadata"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"192.0.0.1", "IETF protocol assignments"},
		{"192.0.0.170", "IETF protocol assignments"},
		{"192.0.2.1", "documentation"},
		{"192.88.99.1", "6to4 relay"},
		{"192.168.1.1", "private"},
		{"198.18.0.1", "benchmarking"},
		{"198.19.255.255", "benchmarking"},
		{"198.51.100.7", "documentation"},
		{"203.0.113.9", "documentation"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"240.0.0.1", "reserved"},
		{"255.255.255.254", "reserved"},
		{"255.255.255.255", "broadcast"},

		// Embedded IPv4: mapped and compatible.
		{"::ffff:127.0.0.1", "(127.0.0.1) is loopback"},
		{"::ffff:10.1.2.3", "private"},
		{"::ffff:169.254.169.254", "cloud metadata"},
		{"::127.0.0.1", "(127.0.0.1) is loopback"},
		{"::10.0.0.1", "private"},
		{"::0.0.0.2", "this network"},

		// IPv6 special-purpose.
		{"::", "unspecified"},
		{"::1", "address ::1 is loopback"},
		{"64:ff9b::7f00:1", "NAT64"},
		{"64:ff9b::808:808", "NAT64"},
		{"64:ff9b:1::1", "local-use NAT64"},
		{"100::1", "discard-only"},
		{"2001::1", "Teredo"},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"},
		{"2001:db8::1", "documentation"},
		{"2001:10::1", "IETF protocol assignments"},
		{"2001:1ff:ffff::1", "IETF protocol assignments"},
		{"2002:7f00:1::1", "6to4"},
		{"2002:808:808::1", "6to4"},
		{"3fff::1", "documentation"},
		{"5f00::1", "SRv6"},
		{"fc00::1", "unique local"},
		{"fd12:3456::1", "unique local"},
		{"fd00:ec2::254", "cloud metadata"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"febf::1", "link-local"},
		{"fec0::1", "site-local"},
		{"ff02::1", "multicast"},
		{"ff05::1:3", "multicast"},
		{"4000::1", "outside IPv6 global unicast"},
		{"1::1", "outside IPv6 global unicast"},
		{"::2:0:0", "outside IPv6 global unicast"},
	}
	for _, tc := range tests {
		t.Run(tc.ip, func(t *testing.T) {
			err := CheckAddr(netip.MustParseAddr(tc.ip), nil)
			if tc.sub == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			rqtWantErr(t, err, ClassPolicyViolation, tc.sub)
		})
	}
}

func TestCheckAddrOwnAndInvalid(t *testing.T) {
	own := []netip.Addr{netip.MustParseAddr("203.0.114.7"), netip.MustParseAddr("2a01:4f8::7"), {}}
	for _, ip := range []string{"203.0.114.7", "::ffff:203.0.114.7", "2a01:4f8::7"} {
		rqtWantErr(t, CheckAddr(netip.MustParseAddr(ip), own), ClassPolicyViolation, "this machine's own addresses")
	}
	if err := CheckAddr(netip.MustParseAddr("203.0.114.8"), own); err != nil {
		t.Errorf("other address refused: %v", err)
	}
	mappedOwn := []netip.Addr{netip.MustParseAddr("::ffff:203.0.114.9")}
	rqtWantErr(t, CheckAddr(netip.MustParseAddr("203.0.114.9"), mappedOwn), ClassPolicyViolation, "own")
	rqtWantErr(t, CheckAddr(netip.Addr{}, nil), ClassPolicyViolation, "invalid IP address")
}

func TestHostAddrsAreRefused(t *testing.T) {
	own := HostAddrs()
	for _, a := range own {
		if err := CheckAddr(a, own); err == nil {
			t.Errorf("own address %s accepted", a)
		}
	}
}

func TestParseLooseIPv4(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" = not an address
	}{
		{"127.0.0.1", "127.0.0.1"},
		{"127.1", "127.0.0.1"},
		{"127.0.1", "127.0.0.1"},
		{"2130706433", "127.0.0.1"},
		{"0x7f000001", "127.0.0.1"},
		{"0X7F.1", "127.0.0.1"},
		{"0x7f.0x0.0x0.0x1", "127.0.0.1"},
		{"0177.0.0.1", "127.0.0.1"},
		{"017700000001", "127.0.0.1"},
		{"0", "0.0.0.0"},
		{"0x", "0.0.0.0"},
		{"10.0x10000", "10.1.0.0"},
		{"169.254.43518", "169.254.169.254"},
		{"4294967295", "255.255.255.255"},
		{"1.2.3.4.", "1.2.3.4"},
		{"4294967296", ""},
		{"256.0.0.1", ""},
		{"1.2.3.256", ""},
		{"1.2.65536", ""},
		{"1.16777216", ""},
		{"1.2.3.4.5", ""},
		{"08.0.0.1", ""},
		{"0x1g", ""},
		{"1..2", ""},
		{"", ""},
		{".", ""},
		{"a.b.c.d", ""},
		{"example.com", ""},
		{"1.2.3.-4", ""},
		{"99999999999999999999", ""},
	}
	for _, tc := range tests {
		got, ok := ParseLooseIPv4(tc.in)
		if tc.want == "" {
			if ok {
				t.Errorf("ParseLooseIPv4(%q) = %s, want no address", tc.in, got)
			}
			continue
		}
		if !ok || got.String() != tc.want {
			t.Errorf("ParseLooseIPv4(%q) = %s, %v; want %s", tc.in, got, ok, tc.want)
		}
	}
}

func TestCheckHostName(t *testing.T) {
	tests := []struct {
		host  string
		class string // "" = allowed
		sub   string
	}{
		{"api.openai.com", "", ""},
		{"API.OpenAI.com.", "", ""},
		{"*.openai.azure.com", "", ""},
		{"api.example.test", "", ""},
		{"x1.0a", "", ""},
		{"localhost.example.com", "", ""},

		{"127.0.0.1", ClassPolicyViolation, "numeric IP"},
		{"2130706433", ClassPolicyViolation, "numeric IP"},
		{"0x7f.1", ClassPolicyViolation, "numeric IP"},
		{"0177.0.0.1", ClassPolicyViolation, "numeric IP"},
		{"127.1", ClassPolicyViolation, "numeric IP"},
		{"127.0.0.1.", ClassPolicyViolation, "numeric IP"},
		{"[::1]", ClassPolicyViolation, "numeric IP"},
		{"::1", ClassPolicyViolation, "numeric IP"},
		{"[::ffff:127.0.0.1]", ClassPolicyViolation, "numeric IP"},
		{"::ffff:127.0.0.1", ClassPolicyViolation, "numeric IP"},
		{"fe80::1%eth0", ClassPolicyViolation, "numeric IP"},
		{"1.2.3.4.5", ClassPolicyViolation, "numeric label"},
		{"foo.123", ClassPolicyViolation, "numeric label"},
		{"foo.0x1f", ClassPolicyViolation, "numeric label"},
		{"localhost", ClassPolicyViolation, "local or metadata"},
		{"LOCALHOST.", ClassPolicyViolation, "local or metadata"},
		{"a.localhost", ClassPolicyViolation, "local or metadata"},
		{"metadata.google.internal", ClassPolicyViolation, "local or metadata"},
		{"metadata", ClassPolicyViolation, "local or metadata"},
		{"instance-data.ec2.internal", ClassPolicyViolation, "local or metadata"},
		{"db.corp.internal", ClassPolicyViolation, "local or metadata"},
		{"printer.local", ClassPolicyViolation, "local or metadata"},
		{"nas.home.arpa", ClassPolicyViolation, "local or metadata"},
		{"1.0.0.127.in-addr.arpa", ClassPolicyViolation, "local or metadata"},
		{"box.localdomain", ClassPolicyViolation, "local or metadata"},
		{"*.localhost", ClassInvalidRequest, "contains '*'"},
		{"*.a.localhost", ClassPolicyViolation, "local or metadata"},
		{"*.corp.internal", ClassPolicyViolation, "local or metadata"},
		{"intranet", ClassPolicyViolation, "single-label"},

		{"", ClassInvalidRequest, "empty host"},
		{"api.openai.com:443", ClassPolicyViolation, "numeric IP"}, // a colon is never a DNS name
		{"https://api.openai.com", ClassPolicyViolation, "numeric IP"},
		{"api.openai.com/v1", ClassInvalidRequest, "contains"},
		{"user@api.openai.com", ClassInvalidRequest, "contains"},
		{"a..b", ClassInvalidRequest, "empty or overlong label"},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			err := CheckHostName(tc.host)
			if tc.class == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			rqtWantErr(t, err, tc.class, tc.sub)
		})
	}
}

// FuzzCheckAddr: CheckAddr never panics, and an accepted address is
// global unicast by the standard library's reckoning, not private, not
// loopback, and stays accepted through IPv4-mapping.
func FuzzCheckAddr(f *testing.F) {
	for _, s := range [][]byte{
		{1, 1, 1, 1}, {127, 0, 0, 1}, {169, 254, 169, 254}, {10, 0, 0, 1},
		netip.MustParseAddr("::ffff:127.0.0.1").AsSlice(),
		netip.MustParseAddr("2606:4700::1").AsSlice(),
		netip.MustParseAddr("64:ff9b::a00:1").AsSlice(),
		netip.MustParseAddr("::127.0.0.1").AsSlice(),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ip, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		err := CheckAddr(ip, nil)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		v := ip.Unmap()
		if !v.IsGlobalUnicast() || v.IsPrivate() || v.IsLoopback() || v.IsLinkLocalUnicast() ||
			v.IsMulticast() || v.IsUnspecified() {
			t.Fatalf("accepted non-global %s", ip)
		}
		if v.Is4() {
			if CheckAddr(netip.AddrFrom16(v.As16()), nil) != nil {
				t.Fatalf("%s accepted but its mapped form refused", v)
			}
		}
		var pe *Error
		if !errors.As(CheckAddr(ip, []netip.Addr{ip}), &pe) || pe.Class != ClassPolicyViolation {
			t.Fatalf("own address %s accepted", ip)
		}
	})
}

// FuzzHostName: CheckHostName never panics, and an accepted name is never
// an IP literal in any spelling.
func FuzzHostName(f *testing.F) {
	for _, s := range []string{"api.openai.com", "127.1", "0x7f.1", "[::1]", "localhost", "a.b.internal", "2130706433", "foo.123"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if CheckHostName(h) != nil {
			return
		}
		n := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
		if _, err := netip.ParseAddr(n); err == nil {
			t.Fatalf("accepted IP literal %q", h)
		}
		if _, ok := ParseLooseIPv4(n); ok {
			t.Fatalf("accepted loose IPv4 %q", h)
		}
		if n == "localhost" || strings.HasSuffix(n, ".localhost") || strings.HasSuffix(n, ".internal") {
			t.Fatalf("accepted local name %q", h)
		}
	})
}
