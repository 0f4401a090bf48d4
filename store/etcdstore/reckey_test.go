package etcdstore_test

import "github.com/pamctl/pamctl/store/etcdstore"

var testRecKey = etcdstore.TestRecKey
