package etcdstore

import (
	"context"
	"fmt"
	"strconv"

	"github.com/pamctl/pamctl/broker/audit"
)

// MemberStatus is one etcd member as `pamctl store status` shows it.
type MemberStatus struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	ClientURLs []string `json:"client_urls"`
	Leader     bool     `json:"leader"`
	// DBSize is the member's backend size in bytes; Error says why the
	// member did not answer (then the other fields are from the member
	// list only).
	DBSize  int64  `json:"db_size,omitempty"`
	Version string `json:"version,omitempty"`
	Error   string `json:"error,omitempty"`
}

// ClusterStatus describes the cluster and pamctl's state in it.
type ClusterStatus struct {
	Prefix  string         `json:"prefix"`
	Members []MemberStatus `json:"members"`
	// Leader is the etcd leader member's name; DBSize the largest member
	// backend.
	Leader string `json:"leader"`
	DBSize int64  `json:"db_size"`
	// Replica is the pamctl replica that runs background work ("" none).
	Replica string       `json:"replica_leader"`
	Audit   audit.Status `json:"audit"`
}

// Status asks every member for its state and reads the audit chain's
// head and the elected replica.
func (db *DB) Status(ctx context.Context) (ClusterStatus, error) {
	st := ClusterStatus{Prefix: db.prefix}
	cctx, cancel := db.op(ctx)
	ml, err := db.cli.MemberList(cctx)
	cancel()
	if err != nil {
		return st, db.wrap("status: member list", err)
	}
	for _, m := range ml.Members {
		ms := MemberStatus{ID: strconv.FormatUint(m.ID, 16), Name: m.Name, ClientURLs: m.ClientURLs}
		if len(m.ClientURLs) == 0 {
			ms.Error = "not started"
		} else {
			sctx, cancel := context.WithTimeout(ctx, db.opTO)
			s, err := db.cli.Status(sctx, m.ClientURLs[0])
			cancel()
			if err != nil {
				ms.Error = err.Error()
			} else {
				ms.DBSize, ms.Version, ms.Leader = s.DbSize, s.Version, s.Leader == m.ID
				st.DBSize = max(st.DBSize, s.DbSize)
				if ms.Leader {
					st.Leader = m.Name
				}
			}
		}
		st.Members = append(st.Members, ms)
	}
	lctx, cancel := db.op(ctx)
	st.Replica, err = db.LeaderID(lctx)
	cancel()
	if err != nil {
		return st, err
	}
	l := &AuditLog{cli: db.cli, prefix: db.prefix, opts: AuditOptions{CommitTimeout: db.opTO, wrap: db.wrap}}
	if st.Audit, err = l.Head(ctx); err != nil {
		return st, fmt.Errorf("etcdstore: status: %w", err)
	}
	return st, nil
}
