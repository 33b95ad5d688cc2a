package session

import (
	"net/http"
	"slices"
	"testing"
)

func TestSessionCookies(t *testing.T) {
	for _, tc := range []struct {
		lines  []string
		values []string
		one    bool
	}{
		{[]string{"JSESSIONID=X"}, []string{"X"}, true},
		{[]string{"a=1; JSESSIONID=X; b=2"}, []string{"X"}, true},
		{[]string{"a=1", "JSESSIONID=X"}, []string{"X"}, true},
		{[]string{`JSESSIONID="Y; JSESSIONID=X`}, []string{"Y", "X"}, false},
		{[]string{`JSESSIONID="Y;JSESSIONID=X`}, []string{"Y", "X"}, false},
		{[]string{"JSESSIONID=\"Y\t; JSESSIONID=X"}, []string{"Y", "X"}, false},
		{[]string{`JSESSIONID= "Y"; JSESSIONID=X`}, []string{"Y", "X"}, false},
		{[]string{`JSESSIONID="Y"`}, []string{"Y"}, false},
		{[]string{"JSESSIONID =X"}, []string{"X"}, false},
		{[]string{"JSESSIONID= X"}, []string{"X"}, false},
		{[]string{"jsessionid=X"}, []string{"X"}, false},
		{[]string{"$Version=1, JSESSIONID=X"}, []string{"X"}, true},
		{[]string{"a=1,JSESSIONID=Y; JSESSIONID=X"}, []string{"Y", "X"}, false},
		{[]string{"JSESSIONID=X", "JSESSIONID=Y"}, []string{"X", "Y"}, false},
		{[]string{"JSESSIONID="}, []string{""}, false},
		{[]string{"other=1"}, nil, false},
	} {
		h := http.Header{"Cookie": tc.lines}
		values, one := SessionCookies(h, "JSESSIONID")
		if !slices.Equal(values, tc.values) || one != tc.one {
			t.Errorf("%q: %q %v, want %q %v", tc.lines, values, one, tc.values, tc.one)
		}
	}
}

func TestStrictCookieLine(t *testing.T) {
	h := http.Header{"Cookie": {`JSESSIONID=X; otpgate_csrf=abc; q="quoted"; sp = 1`, "b=2"}}
	if got, want := StrictCookieLine(h, "otpgate_csrf"), "JSESSIONID=X; b=2"; got != want {
		t.Errorf("StrictCookieLine = %q, want %q", got, want)
	}
}
