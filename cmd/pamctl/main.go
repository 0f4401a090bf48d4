// Command pamctl is privileged access management for AI agents: a broker
// and an OpenAI-compatible proxy in one binary. See README.md.
package main

import (
	"os"

	"github.com/pamctl/pamctl/cmd/pamctl/internal/cli"
)

func main() { os.Exit(cli.Main()) }
