package pages

import (
	"strings"
	"testing"
)

// The confirm page of an operation whose details are not shown as sent
// says so, in the page's language, above the details.
func TestConfirmDoubt(t *testing.T) {
	for _, tc := range []struct {
		doubt  string
		fields []Field
		want   [2]string // a part of the notice, ja and en
	}{
		{"conflicting_values", nil, [2]string{"お取引の内容を表示できません", "its details cannot be shown"}},
		{"escaped_characters", []Field{{Label: "金額", LabelEn: "Amount", Value: `1\u202E0000`}}, [2]string{`\uXXXX の形`, `shown as \uXXXX`}},
		{"reason from a newer gateway", nil, [2]string{"正確に表示できていない可能性", "may not be shown exactly"}},
	} {
		for i, lang := range []Lang{Japanese, English} {
			c := common
			c.Lang = lang
			body := render(t, 200, ConfirmPage{Common: c, ChallengeID: "ch1", Kind: "transfer", Fields: tc.fields, Doubt: tc.doubt})
			notice := `<div class="alert alert-warning" role="alert">` + "\n<p>" + DoubtText(lang, tc.doubt) + "</p>"
			if !strings.Contains(body, notice) || !strings.Contains(DoubtText(lang, tc.doubt), tc.want[i]) {
				t.Errorf("%s/%s: no notice saying %q\n%s", tc.doubt, lang, tc.want[i], body)
			}
			if strings.Index(body, notice) > strings.Index(body, `<table class="details">`) {
				t.Errorf("%s/%s: the notice comes after the details", tc.doubt, lang)
			}
			for _, f := range tc.fields {
				if !strings.Contains(body, "<td>"+f.Value+"</td>") {
					t.Errorf("%s/%s: escaped value %q not shown as text", tc.doubt, lang, f.Value)
				}
			}
		}
	}
	if body := render(t, 200, ConfirmPage{Common: common, ChallengeID: "ch1"}); strings.Contains(body, "alert-warning") || DoubtText(Japanese, "") != "" {
		t.Error("a notice without a doubt")
	}
}
