package broker

import "testing"

func TestItemURL(t *testing.T) {
	for _, c := range []struct{ base, id, want string }{
		{"https://pam.example.com", "req_abc", "https://pam.example.com/ui/requests/req_abc"},
		{"https://pam.example.com/", "req_abc", "https://pam.example.com/ui/requests/req_abc"},
		{"http://127.0.0.1:8700", "req_x", "http://127.0.0.1:8700/ui/requests/req_x"},
		{"https://pam.example.com", "../admin?x=1#f", "https://pam.example.com/ui/requests/..%2Fadmin%3Fx=1%23f"},
		{"", "req_abc", ""},
		{"https://pam.example.com", "", ""},
	} {
		if got := ItemURL(c.base, c.id); got != c.want {
			t.Errorf("ItemURL(%q, %q) = %q, want %q", c.base, c.id, got, c.want)
		}
	}
}
