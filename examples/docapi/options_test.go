package main

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestClientAddr(t *testing.T) {
	proxies, err := parseTrustedProxies("10.0.0.0/8, 127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, remote, xff string
		trusted           []netip.Prefix
		want              string
	}{
		{"no proxy trusted: XFF ignored", "203.0.113.7:5000", "198.51.100.1", nil, "203.0.113.7"},
		{"untrusted peer: XFF ignored", "203.0.113.7:5000", "198.51.100.1", proxies, "203.0.113.7"},
		{"trusted proxy", "127.0.0.1:5000", "198.51.100.1", proxies, "198.51.100.1"},
		{"two trusted hops", "10.1.2.3:5000", "198.51.100.1, 10.9.9.9", proxies, "198.51.100.1"},
		{"forged left-most entry", "127.0.0.1:5000", "1.2.3.4, 198.51.100.1", proxies, "198.51.100.1"},
		{"garbled entry", "127.0.0.1:5000", "nonsense", proxies, "127.0.0.1"},
		{"no XFF", "127.0.0.1:5000", "", proxies, "127.0.0.1"},
		{"IPv6 cut to its /64", "[2001:db8:1:2:3:4:5:6]:443", "", nil, "2001:db8:1:2::/64"},
		{"IPv4-mapped IPv6", "[::ffff:203.0.113.7]:5000", "", nil, "203.0.113.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &server{trustedProxies: tt.trusted}
			r := httptest.NewRequest("POST", "/auth/login", nil)
			r.RemoteAddr = tt.remote
			if tt.xff != "" {
				r.Header.Set("X-Forwarded-For", tt.xff)
			}
			if got := s.clientAddr(r); got != tt.want {
				t.Errorf("clientAddr = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseOptions(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "localhost", "1.2.3"} {
		if _, err := parseTrustedProxies(bad); err == nil {
			t.Errorf("parseTrustedProxies(%q): no error", bad)
		}
	}
	if ps, err := parseTrustedProxies(" "); err != nil || len(ps) != 0 {
		t.Errorf("parseTrustedProxies(blank) = %v, %v; want none", ps, err)
	}
	for v, want := range map[string]bool{"": false, "true": true, "1": true, "false": false} {
		if got, err := parseAdmin(v); err != nil || got != want {
			t.Errorf("parseAdmin(%q) = %v, %v; want %v", v, got, err, want)
		}
	}
	if _, err := parseAdmin("yes please"); err == nil {
		t.Error("parseAdmin(yes please): no error")
	}
	limits := map[string]string{}
	env := func(k string) string { return limits[k] }
	if l, err := parseConnLimits(env); err != nil || l != (connLimits{defaultMaxConns, defaultMaxConnsPerAddr}) {
		t.Errorf("parseConnLimits(unset) = %+v, %v; want the defaults", l, err)
	}
	limits["DOCAPI_MAX_CONNS"], limits["DOCAPI_MAX_CONNS_PER_ADDR"] = "10", "2"
	if l, err := parseConnLimits(env); err != nil || l != (connLimits{10, 2}) {
		t.Errorf("parseConnLimits(10, 2) = %+v, %v", l, err)
	}
	for _, bad := range []string{"0", "-1", "many"} {
		limits["DOCAPI_MAX_CONNS_PER_ADDR"] = bad
		if _, err := parseConnLimits(env); err == nil {
			t.Errorf("DOCAPI_MAX_CONNS_PER_ADDR=%s: no error", bad)
		}
	}
}

func TestBodyHash(t *testing.T) {
	base := func() upload {
		f, err := validate(permis, validForm(permis), today)
		if err != nil {
			t.Fatal(err)
		}
		return upload{fields: f, image: []byte("image"), contentType: "image/png"}
	}
	h := bodyHash(permis, base())
	tests := []struct {
		name   string
		change func(*upload)
		same   bool
	}{
		{"unchanged", func(*upload) {}, true},
		{"a field", func(u *upload) { u.fields["nom_fr"] = "Bennani" }, false},
		{"an optional field left out", func(u *upload) { u.fields["nom_ar"] = nil }, false},
		{"a category", func(u *upload) { u.fields["categories"] = []string{"A1"} }, false},
		{"the image", func(u *upload) { u.image = []byte("imagf") }, false},
		{"value moved between fields", func(u *upload) {
			u.fields["nom_fr"], u.fields["prenom_fr"] = u.fields["prenom_fr"], u.fields["nom_fr"]
		}, false},
	}
	for _, tt := range tests {
		u := base()
		tt.change(&u)
		if got := string(bodyHash(permis, u)) == string(h); got != tt.same {
			t.Errorf("%s: same hash %v, want %v", tt.name, got, tt.same)
		}
	}
}

func TestRequestIDFromTrustedProxiesOnly(t *testing.T) {
	proxies, _ := parseTrustedProxies("10.0.0.0/8")
	s := &server{trustedProxies: proxies}
	tests := []struct {
		name, remote, id string
		kept             bool
	}{
		{"from a trusted proxy", "10.1.2.3:5000", "abc-123", true},
		{"from a client", "203.0.113.7:5000", "abc-123", false},
		{"from a trusted proxy, not printable", "10.1.2.3:5000", "a b", false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/healthz", nil)
		r.RemoteAddr = tt.remote
		r.Header.Set("X-Request-Id", tt.id)
		if got := s.newRequestID(r) == tt.id; got != tt.kept {
			t.Errorf("%s: id kept %v, want %v", tt.name, got, tt.kept)
		}
	}
}
