package gate

import (
	"fmt"
	"strings"

	"github.com/otpgate/otpgate/policy"
)

// CheckRules refuses rule sets whose names would make the audit trail
// ambiguous: two rules of one name (a rule without a name is named after
// its kind, so two unnamed rules of one kind collide), or a name the
// gateway's built-in operations use (any name starting with "otpgate", in
// any letter case).
func CheckRules(rules []policy.Rule) error {
	seen := make(map[string]int, len(rules))
	for i, r := range rules {
		name := r.Name
		if name == "" {
			name = string(r.Kind)
		}
		if strings.HasPrefix(strings.ToLower(name), "otpgate") {
			return fmt.Errorf("rule %d (%q): names starting with \"otpgate\" belong to the gateway's built-in operations (%s); choose another name", i+1, name, RevokeRule)
		}
		if j, dup := seen[name]; dup {
			return fmt.Errorf("rules %d and %d are both named %q; give each rule a name of its own (rule %s <name> { … })", j+1, i+1, name, r.Kind)
		}
		seen[name] = i
	}
	return nil
}

// RevokePath is the path of the built-in revocation under the gateway's
// base path. Every request that any reading of its path makes this one
// belongs to the revocation alone (the caller compares with
// policy.CompileFixedPath): none is passed to the bank, and none is
// held without the checks of the revocation's form.
func RevokePath(base string) string { return strings.TrimRight(base, "/") + "/token/revoke" }
