package policy_test

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/otpgate/otpgate/policy"
)

func Example() {
	// Rules as an operator writes them in the gateway's JSON configuration.
	var rules []policy.Rule
	err := json.Unmarshal([]byte(`[{
		"kind": "transfer",
		"methods": ["POST"],
		"paths": ["/transfer/execute"],
		"show": [
			{"name": "amount", "label": "金額", "label_en": "Amount"},
			{"name": "payee", "label": "振込先", "label_en": "Payee"}
		],
		"charset": "shift_jis"
	}]`), &rules)
	if err != nil {
		panic(err)
	}
	p, err := policy.Compile(rules)
	if err != nil {
		panic(err)
	}

	menu := &policy.Request{Method: "GET", Path: "/menu", NoBody: true}
	fmt.Println("/menu watched:", p.Watches(menu))

	// The bank reads this as POST /transfer/execute.
	r := &policy.Request{
		Method: "POST",
		Path:   "/menu/..;/Transfer;jsessionid=A1B2/execute",
		Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
	}
	fmt.Println(policy.NormalisePath(r.Path), "watched:", p.Watches(r))
	m := p.Classify(r, []byte("amount=50000&payee=%83%84%83%7D%83_"))
	fmt.Println(m.Kind, m.Rule.Name)
	for _, f := range m.Fields {
		fmt.Printf("%s (%s): %s\n", f.Label, f.LabelEn, f.Value)
	}
	// Output:
	// /menu watched: false
	// /transfer/execute watched: true
	// transfer transfer
	// 金額 (Amount): 50000
	// 振込先 (Payee): ヤマダ
}
