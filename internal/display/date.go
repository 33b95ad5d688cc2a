package display

import (
	"strconv"
	"time"
)

// Years outside this range are refused as dates: a transfer date is never
// there, and such a value is more likely a wrong field than a date.
const (
	minYear = 1900
	maxYear = 2999
)

// FormatDate formats a date: 2026年12月7日 in Japanese, 7 Dec 2026 in
// English. Accepted: YYYYMMDD, YYYY-MM-DD and YYYY/MM/DD with two-digit
// month and day, and MMDD (the Zengin 振込指定日), which has no year and is
// shown without one (12月7日 / 7 Dec) rather than with a guessed year.
// The date must exist (20270229 does not; 0229 does, in leap years).
func FormatDate(raw string, lang Lang) Value {
	y, m, d, ok := parseDate(raw)
	if !ok {
		return doubtful(Date, raw, lang, "日付として読めません（YYYYMMDD、YYYY-MM-DD、MMDD）",
			"not a date (want YYYYMMDD, YYYY-MM-DD or MMDD)")
	}
	if lang.en() {
		s := strconv.Itoa(d) + " " + time.Month(m).String()[:3]
		if y != 0 {
			s += " " + strconv.Itoa(y)
		}
		return Value{Text: s, Kind: Date}
	}
	s := strconv.Itoa(m) + "月" + strconv.Itoa(d) + "日"
	if y != 0 {
		s = strconv.Itoa(y) + "年" + s
	}
	return Value{Text: s, Kind: Date}
}

// parseDate reads the accepted forms; y is 0 for MMDD.
func parseDate(s string) (y, m, d int, ok bool) {
	var ys, ms, ds string
	switch {
	case len(s) == 4:
		ms, ds = s[:2], s[2:]
	case len(s) == 8:
		ys, ms, ds = s[:4], s[4:6], s[6:]
	case len(s) == 10 && (s[4] == '-' || s[4] == '/') && s[7] == s[4]:
		ys, ms, ds = s[:4], s[5:7], s[8:]
	default:
		return 0, 0, 0, false
	}
	if !allDigits(ms) || !allDigits(ds) || (ys != "" && !allDigits(ys)) {
		return 0, 0, 0, false
	}
	m, _ = strconv.Atoi(ms)
	d, _ = strconv.Atoi(ds)
	check := 2000 // a leap year, so that MMDD 0229 exists
	if ys != "" {
		y, _ = strconv.Atoi(ys)
		if y < minYear || y > maxYear {
			return 0, 0, 0, false
		}
		check = y
	}
	t := time.Date(check, time.Month(m), d, 0, 0, 0, 0, time.UTC)
	if t.Year() != check || int(t.Month()) != m || t.Day() != d {
		return 0, 0, 0, false
	}
	return y, m, d, true
}
