"""The platform wing: the shared services of the host (PostgreSQL, PgBouncer, Redis, nginx,
certbot, the dashboard, the backups) and the outputs a release reads from them."""
