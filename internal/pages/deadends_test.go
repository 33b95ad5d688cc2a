package pages

import (
	"strings"
	"testing"
	"time"
)

// No dead ends: the token page says why the customer is there and leads
// back to the bank; a spent code's page says when the next one appears.
func TestTokenPageNoticeAndWayBack(t *testing.T) {
	for _, tt := range []struct {
		name   string
		lang   Lang
		notice string
		want   []string
	}{
		{"operation before enrolment", Japanese, "enrol_not_executed", []string{"ご依頼のお取引は実行されていません", "STEP3が終わったら", `href="/menu">メニューへ戻る`}},
		{"operation with an expired token", English, "renew_not_executed", []string{"was NOT executed", "Renew the token first", `href="/menu">Back to the menu`}},
		{"first login", Japanese, "enrol_at_login", []string{"ログインしました", `href="/menu">メニューへ進む`}},
		{"no notice", Japanese, "", []string{`href="/menu">メニューへ戻る`}},
		{"a notice the page does not know", Japanese, "<b>forged</b>", []string{`href="/menu">メニューへ戻る`}},
	} {
		c := common
		c.Lang = tt.lang
		body := render(t, 200, TokenPage{Common: c, State: "none", Notice: tt.notice, Home: "/menu"})
		for _, w := range tt.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: missing %q\n%s", tt.name, w, body)
			}
		}
		if tt.notice == "" || strings.Contains(tt.notice, "<") {
			if strings.Contains(body, `alert-warning" role="status"`) || strings.Contains(body, "forged") {
				t.Errorf("%s: a notice is shown\n%s", tt.name, body)
			}
		}
	}
	if body := render(t, 200, TokenPage{Common: common, State: "active"}); strings.Contains(body, `class="links"`) {
		t.Errorf("a token page without Home links somewhere:\n%s", body)
	}
}

func TestConfirmPageNextCode(t *testing.T) {
	at := time.Date(2026, 12, 7, 6, 4, 0, 0, time.UTC) // 15:04 in Japan
	for lang, want := range map[Lang]string{Japanese: "15:04:00（日本時間）頃", English: "at about 15:04:00 (Japan time)"} {
		c := common
		c.Lang = lang
		body := render(t, 409, ConfirmPage{Common: c, ChallengeID: "x", Error: "otp_reused", NextCode: at})
		if !strings.Contains(body, want) || !strings.Contains(body, `name="otp"`) {
			t.Errorf("%s: missing %q or the code field\n%s", lang, want, body)
		}
	}
}
