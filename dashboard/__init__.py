"""The AI-IA status dashboard: one light page that tells an operator everything about the host.

Two processes, split by privilege (see docs/dashboard.md):

- ``python3 -m dashboard collect``: privileged, scheduled (systemd timer, every minute). Asks the
  Docker Engine API for container states, probes each environment's health URL, reads nginx's
  access log, certificates, release/backup/restore records and log tails, keeps history in
  SQLite and writes one ``status.json`` snapshot (plus log tails) into the state directory.
- ``python3 -m dashboard serve``: unprivileged HTTP server (Basic auth) that reads that
  snapshot, adds live host numbers from psutil and serves the page and its JSON API.

Standard library + psutil only; no Pulumi import: this package is copied onto the host.
"""

__version__ = "1.0.0"
