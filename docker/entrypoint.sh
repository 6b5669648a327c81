#!/bin/sh
# The image's entrypoint: checks that the data directory is writable, then runs the command.
#
# `exec` replaces this shell, so the command (signer-node, coordinator, devnet, policy) is the
# container's PID 1 and receives `docker stop`'s SIGTERM itself: the daemons install their own
# SIGTERM handler (finish running sessions, then exit), so no tini-like init is needed. They
# start no children to reap; `devnet --prepare-only` waits for each `signer-node init` it runs.
set -eu

data="${CUSTODY_DATA_DIR:-/devnet}"
uid="$(id -u)"

if [ ! -d "$data" ]; then
    echo "entrypoint: data directory \`$data\` does not exist; mount a volume there (docker-compose.yml mounts the named volume \`devnet\`)" >&2
    exit 1
fi
# A real write, not `test -w`: it also catches a read-only mount.
probe="$data/.entrypoint-write-test.$$"
if ! (: >"$probe") 2>/dev/null; then
    owner="$(stat -c %u "$data" 2>/dev/null || echo unknown)"
    echo "entrypoint: data directory \`$data\` is not writable by uid $uid (it is owned by uid $owner)." >&2
    echo "entrypoint: a new named volume takes the image's ownership (uid 10001); a bind mount keeps the host's:" >&2
    echo "entrypoint: run \`sudo chown -R 10001:10001 <host directory>\` on the host, or use the named volume." >&2
    exit 1
fi
rm -f "$probe"

if [ "$#" -eq 0 ]; then
    echo "entrypoint: no command; run one of: devnet, signer-node, coordinator, policy" >&2
    exit 2
fi
exec "$@"
