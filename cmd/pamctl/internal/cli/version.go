package cli

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

// Build information, set by the linker (goreleaser sets all three):
//
//	-ldflags "-X github.com/pamctl/pamctl/cmd/pamctl/internal/cli.version=1.2.3 -X ...commit=abc -X ...date=2026-11-25"
var (
	version = "dev"
	commit  = "none"
	date    = "unknown"
)

// NewCmdVersion builds `pamctl version`.
func NewCmdVersion(f *Factory) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if output == "json" {
				return f.IO.JSON(map[string]string{"version": version, "commit": commit, "date": date, "go": runtime.Version(), "platform": runtime.GOOS + "/" + runtime.GOARCH})
			}
			_, err := fmt.Fprintf(f.IO.Out, "pamctl %s (commit %s, built %s, %s %s/%s)\n", version, commit, date, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}

// NewCmdCompletion builds `pamctl completion`.
func NewCmdCompletion(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script",
		Example: `  source <(pamctl completion bash)
  pamctl completion zsh > "${fpath[1]}/_pamctl"
  pamctl completion fish > ~/.config/fish/completions/pamctl.fish`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"bash", "zsh", "fish", "powershell"},
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(f.IO.Out, true)
			case "zsh":
				return root.GenZshCompletion(f.IO.Out)
			case "fish":
				return root.GenFishCompletion(f.IO.Out, true)
			case "powershell":
				return root.GenPowerShellCompletionWithDesc(f.IO.Out)
			}
			return withCode(ExitUsage, fmt.Errorf("unknown shell %q: use bash, zsh, fish or powershell", args[0]))
		},
	}
}
