package policy

import "testing"

func TestFixedPathMatches(t *testing.T) {
	login, err := CompileFixedPath("/login")
	if err != nil {
		t.Fatal(err)
	}
	root, err := CompileFixedPath("/")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		p    *FixedPath
		path string
		want bool
	}{
		{login, "/login", true},
		{login, "/LOGIN", true},
		{login, "/Login/", true},
		{login, "/login//", true},
		{login, "//login", true},
		{login, "/login;x=y", true},
		{login, "/login;jsessionid=ABC", true},
		{login, "/login.", true},
		{login, "/login%20", true},
		{login, "/%6cogin", true},
		{login, "/%256cogin", true},
		{login, "/menu/../login", true},
		{login, "/menu/..;/login", true},
		{login, "/login%00.jsp", true},
		{login, "/login%3fx", true},
		{login, "/logın", true}, // dotless i: Java's equalsIgnoreCase equates it with i
		{login, "/LOG\u0130N", true},
		{login, "/logins", false},
		{login, "/login/x", false},
		{login, "/x/login", false},
		{login, "/", false},
		{login, "/log%69n/x/..", true},
		{root, "/", true},
		{root, "/.", true},
		{root, "/;jsessionid=1", true},
		{root, "/login", false},
	} {
		if got := tc.p.Matches(tc.path); got != tc.want {
			t.Errorf("%s.Matches(%q) = %v, want %v", tc.p, tc.path, got, tc.want)
		}
	}
}

func TestCompileFixedPathErrors(t *testing.T) {
	for _, p := range []string{"", "login", "/login/*", "/**"} {
		if _, err := CompileFixedPath(p); err == nil {
			t.Errorf("CompileFixedPath(%q) accepted", p)
		}
	}
}
