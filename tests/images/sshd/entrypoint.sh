#!/bin/sh
# A new ed25519 host key per container (what the test pins), $AUTHORIZED_KEY (if set) as the
# user's one key, then sshd in the foreground, logging to stderr.
set -eu
ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
if [ -n "${AUTHORIZED_KEY:-}" ]; then
  printf '%s\n' "$AUTHORIZED_KEY" > /home/aiia-backup/.ssh/authorized_keys
  chown aiia-backup:aiia-backup /home/aiia-backup/.ssh/authorized_keys
  chmod 0600 /home/aiia-backup/.ssh/authorized_keys
fi
exec /usr/sbin/sshd -D -e
