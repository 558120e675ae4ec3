

# --- The project's own production settings (twelve-factor: everything from the environment)
import os  # noqa: E402

import dj_database_url  # noqa: E402

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = os.environ["DJANGO_ALLOWED_HOSTS"].split(",")
# dj-database-url's README; PgBouncer in transaction mode pools, so no persistent
# connections and no server-side cursors.
DATABASES = {"default": dj_database_url.config(conn_max_age=0,
                                               disable_server_side_cursors=True)}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                      "LOCATION": os.environ["REDIS_URL"],
                      "KEY_PREFIX": os.environ["CACHE_KEY_PREFIX"]}}
INSTALLED_APPS += ["health_check", "orders"]  # noqa: F821
STATIC_ROOT = os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles")  # noqa: F821
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Celery ("First steps with Django"): the broker is the project's Redis, its keys under the
# same prefix as the cache's (kombu's global_keyprefix); no remote control, whose broadcast
# channels a Redis user limited to its own prefix may not use.
CELERY_BROKER_URL = os.environ["REDIS_URL"]
CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": f"{os.environ['CACHE_KEY_PREFIX']}:"}
CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
