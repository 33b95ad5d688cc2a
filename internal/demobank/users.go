package demobank

// User is one demo login of the bank.
type User struct {
	ServiceID string // the company's contract number (サービスID)
	UserID    string // the person within the company (利用者ID)
	Password  string
	Name      string // the person's display name
	Company   string // the company's display name
}

// The defaults shown on the profile page until a user changes them; the bank keeps
// them so that a user_change is visible on the next visit, as on a real site.
type profile struct {
	Email string
	Phone string
}

var demoUsers = []struct {
	User
	profile
}{
	{User{"S001", "U001", "demo", "山田 太郎", "株式会社さくら商事"}, profile{"yamada@sakura-shoji.example.jp", "03-1234-5678"}},
	{User{"S001", "U002", "demo", "佐藤 花子", "株式会社さくら商事"}, profile{"sato@sakura-shoji.example.jp", "03-1234-5679"}},
	{User{"S002", "U101", "demo", "鈴木 一郎", "有限会社みどり工業"}, profile{"suzuki@midori-kogyo.example.jp", "06-9876-5432"}},
}

// Users lists the demo users (for the demo command's banner). The slice is a copy.
func Users() []User {
	us := make([]User, len(demoUsers))
	for i, d := range demoUsers {
		us[i] = d.User
	}
	return us
}

func userKey(serviceID, userID string) string {
	return serviceID + "\x00" + userID
}
