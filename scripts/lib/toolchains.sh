# Sourced by scripts/test-all.sh and scripts/install-test-tools.sh.
# Puts the machine's language toolchains on PATH when the shell that started us did not: a CI
# runner starts a non-interactive shell that never reads ~/.bashrc, and on this machine kind
# that file is what puts Go (/usr/local/go/bin) and Rust (~/.cargo/bin) on PATH. Directories
# are appended, so a toolchain already on PATH keeps precedence.
for dir in /usr/local/go/bin "$HOME/go/bin" "$HOME/.cargo/bin"; do
  if [ -d "$dir" ]; then
    case ":$PATH:" in
    *":$dir:"*) ;;
    *) PATH="$PATH:$dir" ;;
    esac
  fi
done
export PATH

# need COMMAND WHAT: fails, naming COMMAND and what it is for, when COMMAND is not on PATH.
need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "$(basename "$0"): '$1' not found on PATH ($PATH); it is needed for $2" >&2
    return 1
  fi
}
