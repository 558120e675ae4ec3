"""The host wing: how files and commands reach a host (local or over SSH), the templates
they are rendered from, the house rules every container gets, and the host's provisioning."""
