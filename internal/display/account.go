package display

import "strings"

// accountType is a 預金種目: its Zengin code and the names a bank shows.
type accountType struct {
	code     byte
	ja, en   string
	longName string // the name a customer may type instead of the short one
}

// accountTypes are the 預金種目 codes of the Zengin data record: 1 普通預金,
// 2 当座預金, 4 貯蓄預金, 9 その他 (全銀協制定ファイルフォーマット, data
// record item 7). 3 (納税準備預金) is not a transfer target there.
var accountTypes = []accountType{
	{'1', "普通", "Ordinary", "普通預金"},
	{'2', "当座", "Current", "当座預金"},
	{'4', "貯蓄", "Savings", "貯蓄預金"},
	{'9', "その他", "Other", ""},
}

// AccountTypeName names a 預金種目 code ("1" is 普通 / Ordinary). It reports
// false for any other value.
func AccountTypeName(code string, lang Lang) (string, bool) {
	if len(code) != 1 {
		return "", false
	}
	for _, t := range accountTypes {
		if t.code == code[0] {
			return lang.pick(t.ja, t.en), true
		}
	}
	return "", false
}

// typeByName finds an account type by its code or Japanese name.
func typeByName(s string) (accountType, bool) {
	for _, t := range accountTypes {
		if s == string(t.code) || s == t.ja || (t.longName != "" && s == t.longName) {
			return t, true
		}
	}
	return accountType{}, false
}

// maxAccountDigits is the length of a Zengin account number (N(7)).
const maxAccountDigits = 7

// FormatAccount formats an account: its type by name and its number as
// entered (not padded: the customer recognises what they typed). Accepted,
// and nothing else:
//
//   - a type alone, as a one-character code or a name: "1", "普通", "普通預金"
//     → 普通 (a single character is always a type code, never a number);
//   - a number alone, 2 to 7 ASCII digits: "1234567" → 1234567;
//   - a type and a number separated by exactly one space, ideographic
//     space or hyphen: "1 1234567", "普通 1234567", "普通　1234567",
//     "1-1234567" → 普通 1234567 / Ordinary 1234567.
func FormatAccount(raw string, lang Lang) Value {
	if raw == "" {
		return doubtful(Account, raw, lang, "口座が空です", "the account is empty")
	}
	if allDigits(raw) && len(raw) >= 2 {
		if len(raw) > maxAccountDigits {
			return doubtful(Account, raw, lang, "口座番号が7桁を超えています", "the account number has more than 7 digits")
		}
		return Value{Text: raw, Kind: Account}
	}
	typ, number, found := cutSeparator(raw)
	t, ok := typeByName(typ)
	if !ok {
		return doubtful(Account, raw, lang, "預金種目がわかりません（1普通・2当座・4貯蓄・9その他）",
			"unknown account type (1 ordinary, 2 current, 4 savings, 9 other)")
	}
	name := lang.pick(t.ja, t.en)
	if !found {
		return Value{Text: name, Kind: Account}
	}
	if !allDigits(number) || len(number) > maxAccountDigits {
		return doubtful(Account, raw, lang, "口座番号が7桁までの半角数字ではありません",
			"the account number is not 1 to 7 plain digits")
	}
	return Value{Text: name + " " + number, Kind: Account}
}

// cutSeparator splits "type<sep>number" at its only separator: an ASCII
// space, an ideographic space or a hyphen. found is false when s holds none;
// a second separator stays in number, where it makes the number invalid.
func cutSeparator(s string) (typ, number string, found bool) {
	i := strings.IndexAny(s, " 　-")
	if i < 0 {
		return s, "", false
	}
	sep := 1
	if strings.HasPrefix(s[i:], "　") {
		sep = len("　")
	}
	return s[:i], s[i+sep:], true
}
