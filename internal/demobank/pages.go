package demobank

import (
	"bytes"
	"html/template"
	"net/http"
	"time"
)

// pageData is what every page template receives; each page reads the fields it needs.
type pageData struct {
	Title   string
	User    *User // the logged-in user, nil on the login page
	Error   string
	Message string

	// login page
	ServiceID, UserID string
	Users             []User

	// menu, forms and results
	Ops     []*operation
	Op      *operation
	Values  map[string]string
	Receipt string
	At      time.Time
	Rows    []row
	Missing []string
}

// The look is that of a 2000s Japanese business-banking site: tables, font tags, no
// script. Forms post to absolute paths; the completion page links back with relative
// paths ("../menu"), which resolve only when the browser shows it at the URL the bank
// answered, so tests can tell whether the gateway released it there.
const layout = `{{define "layout"}}<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN">
<html lang="ja">
<head>
<meta http-equiv="Content-Type" content="text/html; charset=UTF-8">
<title>{{.Title}} | デモ信用組合 法人インターネットバンキング</title>
</head>
<body bgcolor="#EFEFDF" text="#000000" link="#0033CC" vlink="#663399">
<table width="760" border="0" cellspacing="0" cellpadding="6" align="center" bgcolor="#FFFFFF">
<tr>
<td bgcolor="#003366"><font color="#FFFFFF" size="4"><b>デモ信用組合</b></font>&nbsp;<font color="#FFFFFF" size="2">法人インターネットバンキング</font></td>
<td bgcolor="#003366" align="right"><font color="#FFFFFF" size="2">{{with .User}}{{.Company}}&nbsp;{{.Name}}&nbsp;様{{end}}</font></td>
</tr>
<tr><td colspan="2" bgcolor="#CCCC99"><font size="3"><b>■&nbsp;{{.Title}}</b></font></td></tr>
<tr><td colspan="2"><font size="2">
{{template "content" .}}
</font></td></tr>
<tr><td colspan="2" bgcolor="#EEEEEE" align="center"><font size="1" color="#666666">このサイトは otpgate のデモ用の架空の金融機関です。実在の金融機関とは関係ありません。<br>Copyright (C) デモ信用組合 All Rights Reserved.</font></td></tr>
</table>
</body>
</html>
{{end}}`

const loginContent = `{{define "content"}}
{{if .Error}}<p><font color="#CC0000"><b>{{.Error}}</b></font></p>{{end}}
<p>サービスID・利用者ID・ログインパスワードを入力して「ログイン」ボタンを押してください。</p>
<form method="post" action="/login">
<table border="1" cellspacing="0" cellpadding="6" bordercolor="#999999">
<tr><th bgcolor="#E0E0C0" align="left">サービスID</th><td><input type="text" name="service_id" size="12" maxlength="10" value="{{.ServiceID}}"></td></tr>
<tr><th bgcolor="#E0E0C0" align="left">利用者ID</th><td><input type="text" name="user_id" size="12" maxlength="10" value="{{.UserID}}"></td></tr>
<tr><th bgcolor="#E0E0C0" align="left">ログインパスワード</th><td><input type="password" name="password" size="20"></td></tr>
</table>
<p><input type="submit" value="ログイン"></p>
</form>
<hr>
<p>デモ用の利用者</p>
<table border="1" cellspacing="0" cellpadding="4" bordercolor="#999999">
<tr bgcolor="#E0E0C0"><th>サービスID</th><th>利用者ID</th><th>パスワード</th><th>企業名</th><th>利用者名</th></tr>
{{range .Users}}<tr><td>{{.ServiceID}}</td><td>{{.UserID}}</td><td>{{.Password}}</td><td>{{.Company}}</td><td>{{.Name}}</td></tr>
{{end}}</table>
{{end}}`

const menuContent = `{{define "content"}}
<p>ご利用になるお取引を選択してください。</p>
<table border="1" cellspacing="0" cellpadding="6" bordercolor="#999999" width="100%">
{{range .Ops}}<tr><td width="220" bgcolor="#F5F5E8"><a href="{{.Page}}">{{.Title}}</a></td><td>{{.Blurb}}</td></tr>
{{end}}<tr><td width="220" bgcolor="#F5F5E8"><a href="` + TokenPage + `">ワンタイムパスワード管理</a></td><td>トークンの利用開始・更新・失効</td></tr>
</table>
<form method="post" action="/logout"><p><input type="submit" value="ログアウト"></p></form>
{{end}}`

const formContent = `{{define "content"}}
<p>必要事項を入力して「実行」ボタンを押してください。</p>
<form method="post" action="{{.Op.Action}}"{{if .Op.Multipart}} enctype="multipart/form-data"{{end}}>
<table border="1" cellspacing="0" cellpadding="6" bordercolor="#999999">
{{range .Op.Fields}}<tr><th bgcolor="#E0E0C0" align="left">{{.Label}}</th><td><input type="{{.Type}}" name="{{.Name}}" size="40" value="{{index $.Values .Name}}">{{if .Hint}}<br><font size="1" color="#666666">{{.Hint}}</font>{{end}}{{if and (eq .Type "file") $.Op.Sample}}<br><font size="1"><a href="{{$.Op.Sample}}">サンプルファイル（全銀協フォーマット）</a></font>{{end}}</td></tr>
{{end}}</table>
<p><input type="submit" value="実行">&nbsp;&nbsp;<a href="/menu">メニューへ戻る</a></p>
</form>
{{end}}`

const doneContent = `{{define "content"}}
<p><b>以下の内容で受け付けました。</b></p>
<table border="1" cellspacing="0" cellpadding="6" bordercolor="#999999">
<tr><th bgcolor="#E0E0C0" align="left">受付番号</th><td>{{.Receipt}}</td></tr>
<tr><th bgcolor="#E0E0C0" align="left">受付日時</th><td>{{.At.Format "2006年01月02日 15:04:05"}}</td></tr>
{{range .Rows}}<tr><th bgcolor="#E0E0C0" align="left">{{.Label}}</th><td>{{.Value}}</td></tr>
{{end}}</table>
<p><a href="..{{.Op.Page}}">続けて{{.Op.Title}}</a>&nbsp;&nbsp;<a href="../menu">メニューへ戻る</a></p>
{{end}}`

const missingContent = `{{define "content"}}
<p><font color="#CC0000"><b>入力内容に不備があります。次の項目を入力してください。</b></font></p>
<ul>{{range .Missing}}<li>{{.}}</li>{{end}}</ul>
<p><a href="{{.Op.Page}}">入力画面へ戻る</a></p>
{{end}}`

const problemContent = `{{define "content"}}
<p><font color="#CC0000"><b>{{.Message}}</b></font></p>
<p><a href="/menu">メニューへ戻る</a>&nbsp;&nbsp;<a href="/login">ログイン画面へ</a></p>
{{end}}`

var (
	loginPage   = page(loginContent)
	menuPage    = page(menuContent)
	formPage    = page(formContent)
	donePage    = page(doneContent)
	missingPage = page(missingContent)
	problemPage = page(problemContent)
)

func page(content string) *template.Template {
	return template.Must(template.Must(template.New("layout").Parse(layout)).Parse(content))
}

// render executes into a buffer first, so a template error cannot leave half a page
// behind a 200 status.
func render(w http.ResponseWriter, status int, t *template.Template, data pageData) {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func renderProblem(w http.ResponseWriter, status int, title, message string) {
	render(w, status, problemPage, pageData{Title: title, Message: message})
}
