#!/usr/bin/env bash
# Everything the demo and the tests need on a fresh Debian machine: system tools, then a venv.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql)
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v gpg >/dev/null || need+=(gnupg)
# the guides in docs/ (run by tests/test_guide.py) use them
command -v jq >/dev/null || need+=(jq)
command -v curl >/dev/null || need+=(curl)
# the dashboard test drives the system browser through its own driver: nothing is downloaded
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing ${need[*]}; run as root or: sudo apt-get install ${need[*]}" >&2
        exit 2
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# PostgreSQL refuses to run as root: as root, the throwaway clusters run as 'postgres'
if [ "$(id -u)" -eq 0 ] && ! id -u postgres >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home postgres
fi

stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements/seaweedfs.txt -nt "$stamp" ] \
        || [ requirements/constraints.txt -nt "$stamp" ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --upgrade pip
    # the versions that deploy (requirements.txt installs with the same constraints)
    .venv/bin/pip install --quiet -c requirements/constraints.txt -e ".[test,control,bench]"
    .venv/bin/pip install --quiet --require-hashes -r requirements/seaweedfs.txt
    touch "$stamp"
fi
