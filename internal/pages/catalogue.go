package pages

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// message is one catalogue entry: the same text in both page languages.
// Texts are plain text (never HTML); the templates escape them.
type message struct{ ja, en string }

// catalogue holds every text the pages show and every message ID the gateway
// passes (Error, Info, Title, Body, Link.Text). An ID with the suffix "_one" is
// the singular form T picks when the first argument is the int 1.
var catalogue = map[string]message{
	// Phishing notice: on every page.
	"phishing_notice": {
		"ワンタイムパスワードは、振込・振替、各種料金の払込、総合振込・給与賞与振込、トークン管理、利用者登録情報変更の操作時にのみ入力を求めます。ログイン時やその他の画面で入力を求められた場合はフィッシングの可能性があります。",
		"A one-time password is requested only for transfers, bill payments, bulk and payroll transfers, token management and changes to user registration. If you are asked for a one-time password at login or on any other screen, it may be a phishing site.",
	},
	"phishing_heading": {"ご注意", "Caution"},
	"contact":          {"お問い合わせ：%s", "Contact: %s"},
	"service_name":     {"ワンタイムパスワード認証", "One-time password authentication"},

	// Titles.
	"title_confirm":         {"お取引の確認", "Confirm your operation"},
	"title_token":           {"ワンタイムパスワードトークン管理", "One-time password token"},
	"title_setup":           {"トークンの初期設定", "Token setup"},
	"title_error":           {"エラー", "Error"},
	"title_notice":          {"お知らせ", "Notice"},
	"title_locked":          {"ワンタイムパスワードがロックされました", "One-time password locked"},
	"title_challenge_gone":  {"お取引の有効期限切れ", "Operation no longer available"},
	"title_login_required":  {"ログインが必要です", "Login required"},
	"title_unavailable":     {"ただいまご利用いただけません", "Service temporarily unavailable"},
	"title_cancelled":       {"お取引を取り消しました", "Operation cancelled"},
	"title_upstream_failed": {"お取引の結果を確認できませんでした", "The result of the operation is unknown"},
	"title_bad_request":     {"リクエストを処理できません", "The request cannot be processed"},

	// Link texts.
	"back_to_menu":     {"メニューへ戻る", "Back to the menu"},
	"to_token_page":    {"トークン管理へ", "To token management"},
	"to_login":         {"ログイン画面へ", "To the login page"},
	"continue_to_menu": {"メニューへ進む", "Continue to the menu"},

	// Messages the gateway passes.
	// What happens at zero attempts is said with the count.
	"invalid_otp": {
		"ワンタイムパスワードが正しくありません。あと%d回誤入力するとロックされ、ワンタイムパスワードが必要なお取引ができなくなります（ロックの解除にはお取引店でのお手続きが必要です）。",
		"The one-time password is incorrect. %d attempts left: after that it is locked, and operations that need a one-time password are not possible until your branch unlocks it.",
	},
	"invalid_otp_one": {
		"ワンタイムパスワードが正しくありません。あと%d回誤入力するとロックされ、ワンタイムパスワードが必要なお取引ができなくなります（ロックの解除にはお取引店でのお手続きが必要です）。",
		"The one-time password is incorrect. %d attempt left: after that it is locked, and operations that need a one-time password are not possible until your branch unlocks it.",
	},
	"otp_reused": {
		"このワンタイムパスワードは既に使用されています。トークンアプリに次のパスワードが表示されるまで（最大{period}秒）お待ちのうえ、新しいパスワードを入力してください。",
		"This one-time password has already been used. Wait until the token app shows the next password (up to {period} seconds) and enter the new one.",
	},
	"next_code_at": {
		"次のパスワードは %s（日本時間）頃にトークンアプリに表示されます。このお取引は実行されていません。表示されたら、この画面で入力してください。",
		"The token app shows the next password at about %s (Japan time). This operation was not executed: enter the new password on this page when it appears.",
	},
	// Why the customer is on the token page (TokenPage.Notice).
	"enrol_not_executed": {
		"ご依頼のお取引は実行されていません。ご契約先ではワンタイムパスワードのご利用が必須のため、先にトークンの利用を開始してください（STEP1～3）。STEP3が終わったら、メニューからもう一度お取引を行ってください。",
		"The operation you started was NOT executed. Your company requires one-time passwords: start using a token first (STEP 1 to 3). When STEP 3 is done, start the operation again from the menu.",
	},
	"renew_not_executed": {
		"ご依頼のお取引は実行されていません。トークンの有効期限が切れているため、先にトークンを更新してください。更新が終わったら、メニューからもう一度お取引を行ってください。",
		"The operation you started was NOT executed, because your token has expired. Renew the token first, then start the operation again from the menu.",
	},
	"enrol_at_login": {
		"ログインしました。ご契約先ではワンタイムパスワードのご利用が必須です。振込などのお取引の前に、この画面でトークンの利用を開始してください（STEP1～3）。後で行う場合は、下のボタンでメニューへ進めます。",
		"You are logged in. Your company requires one-time passwords: before transfers and other protected operations, start using a token on this page (STEP 1 to 3). To do it later, continue to the menu with the button below.",
	},
	"otp_format": {
		"トークンアプリに表示されている{digits}桁の数字を入力してください。",
		"Enter the {digits}-digit number shown in the token app.",
	},
	"locked": {
		"ワンタイムパスワードの誤入力が規定の回数を超えたため、ロックされました。このお取引は破棄され、実行されていません。ロックの解除にはお手続きが必要です。お取引店にお問い合わせください。",
		"The one-time password was entered wrongly too many times and has been locked. This operation was discarded and not executed. Unlocking requires a procedure at the bank: please contact your branch.",
	},
	"challenge_gone": {
		"このお取引は、有効期限切れ・取り消し・実行済みのいずれかのため、ご利用いただけません。実行されたかどうかは取引履歴でご確認のうえ、必要な場合はメニューから操作をやり直してください。",
		"This operation has expired, was cancelled or has already been processed. Check your transaction history to see whether it was executed, and if needed start it again from the banking menu.",
	},
	// A gone operation, as the session that held it is told (the
	// challenge's fate): whether money moved comes first.
	"challenge_gone_expired": {
		"このお取引は、確認画面の有効期限までにワンタイムパスワードが入力されなかったため、実行されていません。お手数ですが、メニューから操作をやり直してください。",
		"This operation was NOT executed: no one-time password was entered before the confirmation expired. Please start it again from the banking menu.",
	},
	"challenge_gone_cancelled": {
		"このお取引は取り消されたため、実行されていません。必要な場合は、メニューから操作をやり直してください。",
		"This operation was cancelled and NOT executed. If you still want it, start it again from the banking menu.",
	},
	"challenge_gone_discarded": {
		"このお取引は破棄されたため、実行されていません（ワンタイムパスワードのロック、トークンの失効、または新しいお取引を続けて始めたことによるものです）。必要な場合は、メニューから操作をやり直してください。",
		"This operation was discarded and NOT executed (the one-time password was locked, the token was revoked, or newer operations were started after it). If you still want it, start it again from the banking menu.",
	},
	"challenge_gone_not_sent": {
		"このお取引は、インターネットバンキングに接続できなかったため送信されておらず、実行されていません。お手数ですが、メニューから操作をやり直してください。",
		"This operation was not sent, because internet banking could not be reached: it was NOT executed. Please start it again from the banking menu.",
	},
	"challenge_gone_done": {
		"このお取引は、ワンタイムパスワードによる確認が済み、既にインターネットバンキングへ送信されています。結果は取引履歴でご確認ください。もう一度操作すると、二重のお取引になるおそれがあります。",
		"This operation was already confirmed with a one-time password and sent to internet banking. Check the result in your transaction history: doing it again may make a duplicate.",
	},
	"title_challenge_gone_expired":   {"有効期限が切れたお取引", "Operation expired"},
	"title_challenge_gone_cancelled": {"取り消したお取引", "Operation cancelled"},
	"title_challenge_gone_discarded": {"破棄されたお取引", "Operation discarded"},
	"title_challenge_gone_not_sent":  {"お取引は実行されていません", "The operation was not executed"},
	"title_challenge_gone_done":      {"確認済みのお取引", "Operation already confirmed"},
	"login_required": {
		"このお取引を行うには、先にインターネットバンキングにログインしてください。",
		"Please log in to internet banking before carrying out this operation.",
	},
	"enrollment_required": {
		"ご契約先ではワンタイムパスワードのご利用が必須です。先にトークンを発行し、利用を開始してください。",
		"Your company requires one-time passwords. Please issue a token and start using it first.",
	},
	"token_expired": {
		"トークンの有効期限が切れています。トークン管理画面でトークンを更新してください。",
		"Your token has expired. Please renew it on the token management page.",
	},
	"token_revoked": {
		"トークンは失効しています。再度ご利用になるには、新しいトークンを発行してください。",
		"Your token has been revoked. To use one-time passwords again, please issue a new token.",
	},
	"csrf": {
		"画面の有効期限が切れました。画面を再読み込みして、もう一度操作してください。",
		"This form has expired. Please reload the page and try again.",
	},
	"store_unavailable": {
		"ただいまサービスをご利用いただけません。しばらくしてから再度お試しください。お取引は実行されていません。",
		"The service is temporarily unavailable. Please try again later. Your operation was not executed.",
	},
	"busy": {
		"ただいま混み合っているため、お取引を受け付けられませんでした。お取引は実行されていません。しばらくしてから再度お試しください。",
		"The service is busy and could not take your operation. Your operation was not executed. Please try again in a moment.",
	},
	"body_too_large": {
		"送信されたデータが大きすぎるため、処理できません。お取引は実行されていません。",
		"The submitted data is too large to be processed. Your operation was not executed.",
	},
	"ambiguous_path": {
		"このURLは銀行のサーバーが異なる意味に解釈するおそれがあるため、受け付けられません（%s）。お取引は実行されていません。メニューから操作をやり直してください。",
		"This address could be read differently by the bank's server, so it was refused (%s). Your operation was not executed. Please start again from the banking menu.",
	},
	"login_unreadable": {
		"ログインの入力内容を一通りに読み取れないため、受け付けられません。ログイン画面から入力し直してください。",
		"The login form could not be read unambiguously; send it as application/x-www-form-urlencoded. Please log in again from the login page.",
	},
	"bad_request": {
		"リクエストを処理できませんでした。お取引は実行されていません。メニューから操作をやり直してください。",
		"The request could not be processed. Your operation was not executed. Please start again from the banking menu.",
	},
	"not_found": {
		"お探しのページは見つかりませんでした。メニューから操作をやり直してください。",
		"The page was not found. Please start again from the banking menu.",
	},
	"unsupported_media_type": {
		"この形式のリクエストは受け付けられません。お取引は実行されていません。画面のフォームから操作をやり直してください。",
		"Requests of this kind are not accepted. Your operation was not executed. Please start again from the form on the page.",
	},
	"path_too_long": {
		"URLが長すぎるため処理できませんでした。お取引は実行されていません。メニューから操作をやり直してください。",
		"The address (URL) is too long to be processed. Your operation was not executed. Please start again from the banking menu.",
	},
	"cancelled": {
		"このお取引は実行されていません。必要な場合は、メニューからもう一度操作してください。",
		"It was not executed. If you still want it, start it again from the banking menu.",
	},
	"pin_format": {
		"利用開始パスワードは4～8桁の数字で入力してください。",
		"The activation PIN must be 4 to 8 digits.",
	},
	"email_format": {
		"メールアドレスの形式が正しくありません。",
		"The e-mail address is not valid.",
	},
	"pin_trivial": {
		"この利用開始パスワードは推測されやすいため、ご利用いただけません。同じ数字の繰り返し（1111など）、連続した数字（1234、4321など）、サービスIDや利用者IDに含まれる数字を避けて決めてください。",
		"This activation PIN is too easy to guess. Choose one that is not one digit repeated (1111), a run (1234, 4321) or digits of your service or user ID.",
	},
	"email_not_registered": {
		"入力されたメールアドレスは、お届けいただいているメールアドレスと一致しません。お届けのメールアドレスを入力してください。お届けがない場合や変更された場合は、お取引店にお問い合わせください。",
		"This is not the e-mail address registered with the bank. Enter the address you registered; if you have none or it has changed, please contact your branch.",
	},
	"email_domain": {
		"このメールアドレスには初期設定用のメールを送信できません。ご利用いただけるドメインのメールアドレスを入力してください。",
		"The setup mail cannot be sent to this address. Enter an address at a domain the bank accepts.",
	},
	"issue_sent": {
		"初期設定用のメールを %s に送信しました。携帯電話でメールを開き、STEP2に進んでください。",
		"A setup mail was sent to %s. Open it on your mobile phone and continue with STEP 2.",
	},
	"mail_failed": {
		"メールを送信できませんでした。トークンは発行されておらず、何も変更されていません。しばらくしてから再度お試しください。",
		"The mail could not be sent. No token was issued and nothing was changed. Please try again later.",
	},
	"active_token": {
		"ご利用中のトークンがあります。新しいトークンを発行するには、先に現在のトークンを失効させてください。",
		"You already have an active token. To issue a new one, revoke the current token first.",
	},
	"reissue_requires_token_or_bank": {
		"トークンをご利用になっていたため、ログインパスワードだけでは新しいトークンを発行できません。トークンアプリに表示されているワンタイムパスワードで現在のトークンを更新してください。トークンをお持ちでない場合（携帯電話の紛失・機種変更など）は、お取引店にトークンの初期化をご依頼ください。",
		"You have had a token, so a new one cannot be issued with your login password alone. Renew your current token with the one-time password your token app shows. If you no longer have the token (lost or changed phone), ask your branch to reset it.",
	},
	"issue_changed": {
		"トークンの発行手続き中に、別の発行が行われました。このお手続きでは何も変更されていません。画面を再読み込みして、もう一度お試しください。",
		"Another issue of the token was made while this one was being sent. Nothing was changed by this one. Reload the page and try again.",
	},
	"setup_failed": {
		"入力された内容に誤りがあります。サービスID、利用者ID、利用開始パスワードをご確認のうえ、もう一度入力してください。",
		"The details entered are not correct. Check your service ID, user ID and activation PIN and try again.",
	},
	"link_gone": {
		"このリンクは無効か、使用済みか、有効期限が切れています。パソコンのトークン管理画面から、もう一度トークンを発行してください。",
		"This link is invalid, already used or expired. Please issue the token again on the token management page in your browser.",
	},
	"activated": {
		"トークンの利用を開始しました。以後、対象のお取引ではワンタイムパスワードを入力してください。",
		"Your token is now active. From now on, enter a one-time password for the protected operations.",
	},
	"renewed": {
		"トークンを更新しました。新しい有効期限は%sです。",
		"Your token was renewed. The new expiry date is %s.",
	},
	"renew_too_early": {
		"トークンはまだ更新できません。%sから更新できます。",
		"The token cannot be renewed yet. Renewal is possible from %s.",
	},
	"renew_too_early_nodate": {
		"トークンはまだ更新できません。更新は有効期限が近づいてから可能になります。",
		"The token cannot be renewed yet. Renewal becomes possible as the expiry date approaches.",
	},
	"not_issued": {
		"トークンが発行されていません。",
		"No token has been issued.",
	},
	"revoked": {
		"トークンを失効させました。再度ワンタイムパスワードをご利用になるには、新しいトークンを発行してください。",
		"Your token was revoked. To use one-time passwords again, please issue a new token.",
	},
	"upstream_failed": {
		"お取引を送信しましたが、インターネットバンキングから応答がありませんでした。このお取引は再送信していません。二重のお取引を防ぐため、やり直す前に必ず取引履歴で結果をご確認ください。",
		"The operation was sent, but internet banking did not answer. It was NOT sent again. To avoid a duplicate, check your transaction history before you try again.",
	},
	"unshowable_request": {
		"このお取引は、確認画面に内容を正確に表示できない形式で送信されたため、受け付けられません（%s）。お取引は実行されていません。メニューから操作をやり直してください。",
		"This operation was sent in a form whose details cannot be shown exactly for confirmation, so it was refused (%s). Your operation was not executed. Please start again from the banking menu.",
	},
	"upstream_not_sent": {
		"インターネットバンキングに接続できなかったため、このお取引は送信されておらず、実行されていません。お手数ですが、メニューから操作をやり直してください。",
		"Internet banking could not be reached, so the operation was not sent and has not been executed. Please start it again from the banking menu.",
	},
	"title_upstream_not_sent": {"お取引は実行されていません", "The operation was not executed"},

	// Operation kinds (confirm page).
	"kind_transfer":         {"振込・振替", "Transfer"},
	"kind_bill_payment":     {"各種料金の払込", "Bill payment"},
	"kind_bulk_transfer":    {"総合振込・給与賞与振込", "Bulk or payroll transfer"},
	"kind_token_management": {"ワンタイムパスワードトークン管理", "OTP token management"},
	"kind_user_change":      {"利用者登録情報変更", "Change of user registration"},
	"kind_other":            {"保護されたお取引", "Protected operation"},
	"kind_revoke":           {"トークンの失効", "Revoking your token"},
	"revoke_notice": {
		"このトークンを失効させます。失効後は、新しいトークンを発行して利用を開始するまで、ワンタイムパスワードが必要なお取引はご利用いただけません。",
		"This will revoke your token. Until you issue a new token and start using it, operations that need a one-time password are not possible.",
	},

	// Transfer file summary (confirm page) and list (file page).
	"title_file":          {"振込データの明細", "Transfers in the file"},
	"back_to_confirm":     {"確認画面に戻る", "Back to the confirmation"},
	"file_heading":        {"振込データの内容", "Transfer file"},
	"file_type":           {"種類", "Type"},
	"file_type_unknown":   {"不明（種別コード %s）", "Unknown (type code %s)"},
	"file_requester":      {"依頼人", "Requester"},
	"file_requester_code": {"%s（依頼人コード %s）", "%s (requester code %s)"},
	"file_date":           {"振込指定日", "Transfer date"},
	"file_from":           {"出金口座", "Account debited"},
	"file_count":          {"件数", "Number of transfers"},
	"file_transfers":      {"%s件", "%s transfers"},
	"file_transfers_one":  {"%s件", "%s transfer"},
	"file_total":          {"合計金額", "Total amount"},
	"file_sha256":         {"ファイルのSHA-256", "SHA-256 of the file"},
	"file_top":            {"金額の大きいお振込（上位%d件）", "The %d largest transfers"},
	"file_all":            {"お振込の明細", "The transfers"},
	"file_bank":           {"金融機関", "Bank"},
	"file_branch":         {"支店", "Branch"},
	"file_account":        {"口座", "Account"},
	"file_recipient":      {"受取人", "Recipient"},
	"file_amount":         {"金額", "Amount"},
	"file_list_link":      {"すべてのお振込を表示する（%s件）", "Show all %s transfers"},
	"file_list_capped":    {"全%s件のうち、最初の%s件を表示しています。", "The first %[2]s of %[1]s transfers are shown."},
	"file_doubt": {
		"ご注意：この振込データには次の問題があるため、インターネットバンキングが実行する内容と、この画面の表示が異なるおそれがあります。ご自身で作成したファイルで、問題の内容に心当たりがある場合を除き、実行せずに取り消してください。",
		"Caution: this transfer file has the problems below, so what internet banking executes may differ from what this page shows. Unless you made this file yourself and recognise the problems, do not execute it: cancel it.",
	},
	"file_problems_more":     {"ほかに%d件の問題があります。", "%d more problems."},
	"file_problems_more_one": {"ほかに%d件の問題があります。", "%d more problem."},
	"file_unreadable": {
		"ご注意：振込データのファイルを読み取れないため、内容を表示できません。実行せずに取り消し、ファイルを確認してもう一度送信してください。",
		"Caution: the transfer file cannot be read, so its contents cannot be shown. Do not execute this operation: cancel it, check the file and send it again.",
	},

	// Confirm page.
	"confirm_intro": {
		"次のお取引を実行するには、トークンアプリに表示されているワンタイムパスワードを入力してください。内容をよくご確認ください。",
		"To execute the following operation, enter the one-time password shown in your token app. Please check the details carefully.",
	},
	"operation":           {"お取引の種類", "Operation"},
	"field":               {"項目", "Item"},
	"expires_at":          {"この確認画面の有効期限：%s（日本時間）", "This confirmation is valid until %s (Japan time)."},
	"attempts_left":       {"あと%d回誤入力するとロックされます。", "%d more wrong entries will lock the one-time password."},
	"attempts_left_one":   {"あと%d回誤入力するとロックされます。", "%d more wrong entry will lock the one-time password."},
	"otp_label":           {"ワンタイムパスワード", "One-time password"},
	"otp_hint":            {"トークンアプリに表示されている{digits}桁の数字（{period}秒ごとに変わります）", "The {digits}-digit number shown in your token app (it changes every {period} seconds)"},
	"confirm_submit":      {"確認して実行する", "Confirm and execute"},
	"cancel_heading":      {"お取引を中止する場合", "If you do not want this operation"},
	"cancel_submit":       {"このお取引を取り消す", "Cancel this operation"},
	"renew_soon":          {"トークンの有効期限まであと%d日です。お早めに更新してください。", "Your token expires in %d days. Please renew it soon."},
	"renew_soon_one":      {"トークンの有効期限まであと%d日です。お早めに更新してください。", "Your token expires in %d day. Please renew it soon."},
	"renew_soon_link":     {"トークンを更新する", "Renew the token"},
	"your_mobile_address": {"ご登録の携帯メールアドレス", "your registered mobile address"},
	// Why the details are not shown as sent (ConfirmPage.Doubt, prefixed
	// "doubt_"; "doubt_other" for a reason the catalogue does not know).
	"doubt_conflicting_values": {
		"ご注意：このお取引は、同じ項目に異なる値が複数送信されたため、インターネットバンキングがどの値で実行するかを確認できません。そのため、お取引の内容を表示できません。ご自身で今この操作を行い、内容を把握している場合を除き、実行せずに取り消してください。",
		"Caution: this operation was sent with several different values for the same item, so which one internet banking will execute cannot be known, and its details cannot be shown. Unless you have just made this operation yourself and know its details, do not execute it: cancel it.",
	},
	"doubt_escaped_characters": {
		"ご注意：表示内容に、見えない文字、表示の順序を変える文字、または紛らわしい数字（全角数字など）が含まれています。これらの文字は \\uXXXX の形（文字番号）で表示しています。特に金額と振込先が意図したとおりか、よくご確認ください。",
		"Caution: the details contain invisible characters, characters that change the display order, or look-alike digits (such as fullwidth digits). These characters are shown as \\uXXXX (their code numbers). Check carefully that the amount and the payee are what you intend.",
	},
	"doubt_other": {
		"ご注意：このお取引の内容は、インターネットバンキングが実行する内容と同じであることを確認できないため、正確に表示できていない可能性があります。",
		"Caution: the details of this operation could not be checked against what internet banking will execute, and may not be shown exactly.",
	},

	// Token page.
	"state":             {"状態", "Status"},
	"state_none":        {"未発行", "Not issued"},
	"state_issued":      {"発行済み（初期設定待ち）", "Issued (waiting for setup)"},
	"state_initialised": {"初期設定済み（利用開始の確認待ち）", "Set up (waiting for the first code)"},
	"state_active":      {"利用中", "Active"},
	"state_expired":     {"有効期限切れ", "Expired"},
	"state_revoked":     {"失効済み", "Revoked"},
	"state_unknown":     {"不明", "Unknown"},
	"state_locked":      {"ロック中", "Locked"},
	"email":             {"メールアドレス", "E-mail address"},
	"expiry":            {"有効期限", "Expiry date"},
	"days_left":         {"あと%d日", "%d days left"},
	"days_left_one":     {"あと%d日", "%d day left"},
	"in_parentheses":    {"（%s）", " (%s)"},
	"token_locked": {
		"ワンタイムパスワードの誤入力が規定の回数を超えたため、トークンはロックされています。ロック中はワンタイムパスワードが必要なお取引とトークンの操作はできません。ロックの解除にはお手続きが必要です。お取引店にお問い合わせください。",
		"Your token is locked because a wrong one-time password was entered too many times. While it is locked, operations that need a one-time password and token changes are not possible. Unlocking requires a procedure at the bank: please contact your branch.",
	},
	"steps_heading": {"ご利用開始までの流れ", "How to start"},
	"step1": {
		"STEP1　トークンの発行：この画面で携帯電話のメールアドレスと、お客さまご自身で決める利用開始パスワード（4～8桁の数字）を入力し、発行してください。初期設定用のメールが届きます。",
		"STEP 1 Issue the token: on this page, enter your mobile e-mail address and an activation PIN of your choice (4 to 8 digits), and issue the token. A setup mail will be sent to you.",
	},
	"step2": {
		"STEP2　初期設定：携帯電話でメールのリンクを開き、サービスID、利用者ID、利用開始パスワードを入力して、表示されたトークンをトークンアプリに登録してください。",
		"STEP 2 Set up: on your mobile phone, open the link in the mail, enter your service ID, user ID and activation PIN, and register the token that is shown in your token app.",
	},
	"step3": {
		"STEP3　利用開始の確認：この画面に戻り、トークンアプリに表示された最初のワンタイムパスワードを入力してください。",
		"STEP 3 Confirm: come back to this page and enter the first one-time password shown in your token app.",
	},
	"current_step":  {"現在のステップ", "Current step"},
	"issue_heading": {"トークンの発行（STEP1）", "Issue a token (STEP 1)"},
	"email_label":   {"携帯電話のメールアドレス", "Mobile e-mail address"},
	"email_hint": {
		"迷惑メール対策をされている場合は、初期設定用メールの送信元アドレスからのメールを受信できるよう設定してください。",
		"If you filter unwanted mail, allow mail from the sender address of the setup mail.",
	},
	"email_hint_from": {
		"迷惑メール対策をされている場合は、初期設定用メールの送信元アドレス %s からのメールを受信できるよう設定してください。",
		"If you filter unwanted mail, allow mail from %s, the sender of the setup mail.",
	},
	"pin_label":       {"利用開始パスワード（4～8桁の数字）", "Activation PIN (4 to 8 digits)"},
	"pin_hint":        {"STEP2の初期設定で使います。ログインパスワードとは別の数字を決めてください。", "You will need it for the setup in STEP 2. Choose a number different from your login password."},
	"issue_submit":    {"トークンを発行する", "Issue the token"},
	"sent_to":         {"初期設定用のメールを %s に送信しました。", "A setup mail was sent to %s."},
	"confirm_heading": {"利用開始の確認（STEP3）", "Confirm the token (STEP 3)"},
	"confirm_token_intro": {
		"初期設定が終わったら、トークンアプリに表示されているワンタイムパスワードを入力してください。",
		"When the setup is done, enter the one-time password shown in your token app.",
	},
	"activate_submit": {"利用を開始する", "Start using the token"},
	"reissue_heading": {"メールを再送する", "Send the mail again"},
	"reissue_intro": {
		"メールが届かない場合や、リンクの有効期限が切れた場合は、もう一度発行してください。",
		"If the mail did not arrive or the link has expired, issue the token again.",
	},
	"reissue_submit": {"もう一度送信する", "Send again"},
	"renew_heading":  {"トークンの更新", "Renew the token"},
	"renew_intro": {
		"有効期限が近づいています。トークンアプリに表示されているワンタイムパスワードを入力して、トークンを更新してください。",
		"Your token expires soon. Enter the one-time password shown in your token app to renew it.",
	},
	"renew_expired_intro": {
		"トークンの有効期限が切れています。有効期限が切れた後も更新できます。トークンアプリに表示されているワンタイムパスワードを入力して、トークンを更新してください。",
		"Your token has expired. It can still be renewed: enter the one-time password shown in your token app to renew it.",
	},
	"renew_from":     {"更新は%sから可能です。", "Renewal is possible from %s."},
	"renew_submit":   {"トークンを更新する", "Renew the token"},
	"revoke_heading": {"トークンの失効", "Revoke the token"},
	"revoke_intro": {
		"携帯電話の機種変更をされる場合は、機種変更の前に現在のトークンを失効させてください。失効させずに機種変更されると、お取引店でのお手続きが必要になります。失効には次の画面でワンタイムパスワードの入力が必要です。",
		"If you are changing your mobile phone, revoke the current token before you change phones. Otherwise the bank has to reset it through a procedure at your branch. Revoking asks for a one-time password on the next page.",
	},
	"revoke_submit": {"トークンを失効させる", "Revoke the token"},

	// Setup page (on the phone).
	"setup_intro": {
		"STEP2　メールに記載のリンクから開いた画面です。サービスID、利用者ID、STEP1で決めた利用開始パスワードを入力してください。",
		"STEP 2 You opened this page from the link in the setup mail. Enter your service ID, user ID and the activation PIN you chose in STEP 1.",
	},
	"service_id_label": {"サービスID", "Service ID"},
	"user_id_label":    {"利用者ID", "User ID"},
	"setup_pin_label":  {"利用開始パスワード", "Activation PIN"},
	"setup_submit":     {"初期設定する", "Set up"},
	"setup_done_intro": {
		"トークンの初期設定ができました。次のボタンでトークンアプリに登録してください。",
		"The token is ready. Register it in your token app with the button below.",
	},
	"account":     {"アプリでの表示名", "Account name in the app"},
	"open_in_app": {"トークンアプリに登録する", "Open in the token app"},
	"qr_alt":      {"トークン登録用のQRコード", "QR code to register the token"},
	"qr_hint": {
		"別の端末のトークンアプリで登録する場合は、このQRコードを読み取ってください。",
		"To register the token in an app on another device, scan this QR code.",
	},
	"secret_label": {"手入力用のキー", "Key for manual entry"},
	"secret_hint": {
		"ボタンやQRコードが使えない場合は、トークンアプリにこのキーを入力してください（時間ベース、{period}秒、{digits}桁）。",
		"If the button and the QR code do not work, type this key into your token app (time-based, {period} seconds, {digits} digits).",
	},
	"secret_warning": {
		"このキーは誰にも教えないでください。この画面は一度しか表示されません。",
		"Never show this key to anyone. This page is shown only once.",
	},
	"setup_next": {
		"登録が終わったら、パソコンのブラウザに戻り、トークンアプリに表示された最初のワンタイムパスワードを入力してください（STEP3）。",
		"When the token is registered, return to the browser and enter the first one-time password shown in the app (STEP 3).",
	},
}

// T returns the catalogue text for a message ID in lang, formatted with args
// (fmt-style). An unknown ID returns the ID itself; an unknown lang is
// Japanese. When the first argument is the int 1 and the ID has a singular
// form (ID+"_one"), that form is used. Arguments beyond the verbs the text
// has are dropped, so a caller may pass, say, attempts left to any message.
// Texts about the codes say the default period and digits (60 seconds, 6
// digits): use Common.T for the gateway's own.
func T(lang Lang, id string, args ...any) string { return text(lang, 0, 0, id, args...) }

// T is T in the page's language, with the page's period and digits where
// a text speaks of the codes ("it changes every 60 seconds").
func (c Common) T(id string, args ...any) string {
	return text(c.Lang, c.Period, c.Digits, id, args...)
}

// text is T with the period and digits of the codes; zero values are the
// defaults. The catalogue writes them as "{period}" (whole seconds) and
// "{digits}", which are filled in before the fmt verbs, so an argument
// that holds such a word is left as it is.
func text(lang Lang, period time.Duration, digits int, id string, args ...any) string {
	m, ok := catalogue[id]
	if !ok {
		if missing != nil {
			missing(id)
		}
		return id
	}
	if len(args) > 0 {
		if n, isInt := args[0].(int); isInt && n == 1 {
			if one, ok := catalogue[id+"_one"]; ok {
				m = one
			}
		}
	}
	t := m.ja
	if lang == English && m.en != "" {
		t = m.en
	}
	if strings.Contains(t, "{") {
		t = codeWords(period, digits).Replace(t)
	}
	n := verbs(t)
	if n == 0 {
		return t
	}
	if len(args) > n {
		args = args[:n]
	}
	return fmt.Sprintf(t, args...)
}

// codeWords fills in the words the catalogue uses for the codes.
func codeWords(period time.Duration, digits int) *strings.Replacer {
	secs := int(period / time.Second)
	if secs <= 0 {
		secs = 60
	}
	if digits <= 0 {
		digits = 6
	}
	return strings.NewReplacer("{period}", strconv.Itoa(secs), "{digits}", strconv.Itoa(digits))
}

// missing, when set (by tests), is told every ID that T does not know.
var missing func(id string)

// verbs counts the formatting verbs in s ("%%" is not one).
func verbs(s string) int {
	n := 0
	for i := 0; i < len(s)-1; i++ {
		if s[i] != '%' {
			continue
		}
		if s[i+1] != '%' {
			n++
		}
		i++
	}
	return n
}
