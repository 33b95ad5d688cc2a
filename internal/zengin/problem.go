package zengin

import (
	"fmt"
	"strconv"

	"github.com/otpgate/otpgate/internal/display"
)

// ProblemCode names a kind of problem. The values are stable: they go into
// the audit trail and API answers.
type ProblemCode string

// The problems.
const (
	ProblemEmpty            ProblemCode = "empty"         // the file has no bytes
	ProblemRecordLength     ProblemCode = "record_length" // a record is shorter than 120 bytes
	ProblemSeparator        ProblemCode = "line_break"    // a record is not followed by the file's line break
	ProblemRecordType       ProblemCode = "record_type"   // データ区分 not 1, 2, 8 or 9
	ProblemNoHeader         ProblemCode = "no_header"     // the file does not start with a header
	ProblemSecondHeader     ProblemCode = "second_header" // more than one header: more than one batch
	ProblemDataAfterTrailer ProblemCode = "data_after_trailer"
	ProblemSecondTrailer    ProblemCode = "second_trailer"
	ProblemAfterEnd         ProblemCode = "after_end" // a record after the end record
	ProblemNoTrailer        ProblemCode = "no_trailer"
	ProblemNoEnd            ProblemCode = "no_end"
	ProblemType             ProblemCode = "type_code"     // 種別コード not a transfer file's
	ProblemCodeSection      ProblemCode = "code_section"  // コード区分 not 0 (JIS)
	ProblemDate             ProblemCode = "date"          // 振込指定日 not a month and day
	ProblemNotDigits        ProblemCode = "not_digits"    // a numeric field holds something else
	ProblemAccountType      ProblemCode = "account_type"  // 預金種目 not 1, 2, 4 or 9
	ProblemBlank            ProblemCode = "blank"         // a required field is blank
	ProblemZeroAmount       ProblemCode = "zero_amount"   // a transfer of 0 yen
	ProblemCharset          ProblemCode = "charset"       // a byte or character that is not half-width / not shown as is
	ProblemTrailerCount     ProblemCode = "trailer_count" // the trailer's count is not the number of data records
	ProblemTrailerTotal     ProblemCode = "trailer_total" // the trailer's total is not the sum of the amounts
	ProblemNoTransfers      ProblemCode = "no_transfers"
	ProblemTooManyRecords   ProblemCode = "too_many_records"
	ProblemEncoding         ProblemCode = "encoding"   // CSV: not valid in its charset
	ProblemCSV              ProblemCode = "csv"        // CSV: does not parse
	ProblemColumns          ProblemCode = "columns"    // CSV: a row lacks a mapped column
	ProblemColumnMap        ProblemCode = "column_map" // CSV: the column map is not valid
)

// FieldName names a field of a record, for problems.
type FieldName string

// The fields problems name.
const (
	FieldType          FieldName = "type_code"
	FieldCodeSection   FieldName = "code_section"
	FieldRequesterCode FieldName = "requester_code"
	FieldRequesterName FieldName = "requester_name"
	FieldDate          FieldName = "date"
	FieldBankCode      FieldName = "bank_code"
	FieldBankName      FieldName = "bank_name"
	FieldBranchCode    FieldName = "branch_code"
	FieldBranchName    FieldName = "branch_name"
	FieldAccountType   FieldName = "account_type"
	FieldAccountNumber FieldName = "account_number"
	FieldRecipient     FieldName = "recipient"
	FieldAmount        FieldName = "amount"
	FieldTrailerCount  FieldName = "trailer_count"
	FieldTrailerTotal  FieldName = "trailer_total"
)

// fieldNames are the fields' names as the bank documents write them.
var fieldNames = map[FieldName][2]string{
	FieldType:          {"種別コード", "type code"},
	FieldCodeSection:   {"コード区分", "code section"},
	FieldRequesterCode: {"依頼人コード", "requester code"},
	FieldRequesterName: {"依頼人名", "requester name"},
	FieldDate:          {"振込指定日", "transfer date"},
	FieldBankCode:      {"金融機関コード", "bank code"},
	FieldBankName:      {"金融機関名", "bank name"},
	FieldBranchCode:    {"支店コード", "branch code"},
	FieldBranchName:    {"支店名", "branch name"},
	FieldAccountType:   {"預金種目", "account type"},
	FieldAccountNumber: {"口座番号", "account number"},
	FieldRecipient:     {"受取人名", "recipient name"},
	FieldAmount:        {"振込金額", "amount"},
	FieldTrailerCount:  {"合計件数", "total count"},
	FieldTrailerTotal:  {"合計金額", "total amount"},
}

// Problem is one thing wrong with a file.
type Problem struct {
	Code   ProblemCode
	Record int       // 1-based record (CSV: row) it is about; 0 for the file as a whole
	Field  FieldName // the field, if one
	Pos    int       // 1-based byte position in the record (charset), or 0
	// Want and Got: what the file should hold and what it holds, when that
	// helps (the trailer's count and the records counted, a bad value).
	Want, Got string
	row       bool // a CSV row, not a record
}

// Japanese says what is wrong, in Japanese.
func (p Problem) Japanese() string { return p.text(display.Japanese) }

// English says what is wrong, in English.
func (p Problem) English() string { return p.text(display.English) }

// text composes the message: where, then what.
func (p Problem) text(lang display.Lang) string {
	en := lang == display.English
	pick := func(ja, english string) string {
		if en {
			return english
		}
		return ja
	}
	where := ""
	if p.Record > 0 {
		switch {
		case p.row:
			where = pick(fmt.Sprintf("%d行目: ", p.Record), fmt.Sprintf("Row %d: ", p.Record))
		default:
			where = pick(fmt.Sprintf("レコード%d: ", p.Record), fmt.Sprintf("Record %d: ", p.Record))
		}
	}
	name := fieldNames[p.Field][0]
	if en {
		name = fieldNames[p.Field][1]
	}
	yen := func(s string) string { return display.FormatYen(s, lang).Text }
	var what string
	switch p.Code {
	case ProblemEmpty:
		what = pick("ファイルが空です。", "The file is empty.")
	case ProblemRecordLength:
		what = pick("レコードが"+p.Got+"バイトしかありません（120バイトのはずです）。ここから先は読めません。",
			"only "+p.Got+" bytes, not 120. Nothing after this could be read.")
	case ProblemSeparator:
		what = pick("この後に、ほかのレコードと同じ改行（"+p.Want+"）がありません。ここから先は読めません。",
			"not followed by the line break ("+p.Want+") the other records have. Nothing after this could be read.")
	case ProblemRecordType:
		what = pick("データ区分「"+p.Got+"」は1・2・8・9のいずれでもありません。",
			"record type \""+p.Got+"\" is not 1, 2, 8 or 9.")
	case ProblemNoHeader:
		what = pick("ファイルがヘッダーレコードで始まっていません。", "the file does not start with a header record.")
	case ProblemSecondHeader:
		what = pick("2つ目のヘッダーレコードです。複数のファイルがつながっています。",
			"a second header record: the file holds more than one batch.")
	case ProblemDataAfterTrailer:
		what = pick("トレーラーレコードの後にデータレコードがあります。", "a data record after the trailer record.")
	case ProblemSecondTrailer:
		what = pick("2つ目のトレーラーレコードです。", "a second trailer record.")
	case ProblemAfterEnd:
		what = pick("エンドレコードの後にまだデータがあります。ここから先は読んでいません。",
			"more data after the end record. Nothing after it was read.")
	case ProblemNoTrailer:
		what = pick("トレーラーレコードがありません。", "The file has no trailer record.")
	case ProblemNoEnd:
		what = pick("エンドレコードがありません。", "The file has no end record.")
	case ProblemType:
		what = pick("種別コード「"+p.Got+"」は総合振込（21）・給与振込（11）・賞与振込（12）のいずれでもありません。",
			"type code \""+p.Got+"\" is not bulk (21), salary (11) or bonus (12) transfer.")
	case ProblemCodeSection:
		what = pick("コード区分「"+p.Got+"」がJIS（0）ではありません。", "code section \""+p.Got+"\" is not JIS (0).")
	case ProblemDate:
		what = pick("振込指定日「"+p.Got+"」が月日（MMDD）として正しくありません。",
			"transfer date \""+p.Got+"\" is not a month and day (MMDD).")
	case ProblemNotDigits:
		if p.Want != "" {
			what = pick(name+"「"+p.Got+"」が"+p.Want+"桁の数字ではありません。", name+" \""+p.Got+"\" is not "+p.Want+" digits.")
		} else {
			what = pick(name+"「"+p.Got+"」が数字ではありません。", name+" \""+p.Got+"\" is not digits.")
		}
	case ProblemAccountType:
		what = pick("預金種目「"+p.Got+"」は1（普通）・2（当座）・4（貯蓄）・9（その他）のいずれでもありません。",
			"account type \""+p.Got+"\" is not 1 (ordinary), 2 (current), 4 (savings) or 9 (other).")
	case ProblemBlank:
		what = pick(name+"が空白です。", name+" is blank.")
	case ProblemZeroAmount:
		what = pick("振込金額が0円です。", "the amount is 0 yen.")
	case ProblemCharset:
		if p.row {
			what = pick(name+"に画面にそのまま表示できない文字（"+p.Got+"）があります。",
				name+" holds a character that cannot be shown as it is ("+p.Got+").")
		} else {
			what = pick(strconv.Itoa(p.Pos)+"バイト目（"+p.Got+"）が半角文字ではありません。",
				"byte "+strconv.Itoa(p.Pos)+" ("+p.Got+") is not a half-width character.")
		}
	case ProblemTrailerCount:
		what = pick("トレーラーレコードの合計件数は"+p.Want+"件ですが、データレコードは"+p.Got+"件です。",
			"The trailer record says "+p.Want+" transfers, but the file holds "+p.Got+".")
	case ProblemTrailerTotal:
		what = pick("トレーラーレコードの合計金額は"+yen(p.Want)+"ですが、振込金額の合計は"+yen(p.Got)+"です。",
			"The trailer record says "+yen(p.Want)+" in total, but the amounts add up to "+yen(p.Got)+".")
	case ProblemNoTransfers:
		what = pick("振込のデータがありません。", "The file holds no transfers.")
	case ProblemTooManyRecords:
		what = pick(p.Want+"件を超えるため、ここから先は読んでいません。",
			"More than "+p.Want+" records: the rest was not read.")
	case ProblemEncoding:
		what = pick("ファイルが"+p.Want+"として正しくありません。", "The file is not valid "+p.Want+".")
	case ProblemCSV:
		what = pick("CSVとして読めません（"+p.Got+"）。", "not valid CSV ("+p.Got+").")
	case ProblemColumns:
		what = pick(p.Want+"列目がありません（"+p.Got+"列）。", "no column "+p.Want+" (the row has "+p.Got+").")
	case ProblemColumnMap:
		what = pick("列の設定が正しくありません（"+p.Got+"）。", "The column map is not valid ("+p.Got+").")
	default:
		what = string(p.Code)
	}
	return where + what
}

// String is the English message, for logs.
func (p Problem) String() string { return p.English() }
