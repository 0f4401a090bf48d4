package broker

import "time"

// RevokedGrants is a snapshot of the revocation set: grant id → when its
// tokens would expire anyway. The broker streams it to remote proxies.
func (s *Service) RevokedGrants() map[string]time.Time {
	out := map[string]time.Time{}
	s.revoked.Range(func(k, v any) bool {
		id, _ := k.(string)
		until, _ := v.(time.Time)
		out[id] = until
		return true
	})
	return out
}
