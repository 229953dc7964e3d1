//go:build tools

// Package tools names the command that scripts/install-test-tools.sh builds from this module.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
