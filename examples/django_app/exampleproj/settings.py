"""Settings of the vaultdb example: one switch (ENGINE) plus a VAULT dict.

Everything the VAULT dict leaves out comes from the environment (VAULT_ADDR, VAULTDB_TOKEN_PATH,
VAULTDB_DRAIN_SECONDS, ...), the way a Kubernetes deployment would set it.
"""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
INSTALLED_APPS = ["vaultdb.integrations.django", "visits"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "exampleproj.urls"
WSGI_APPLICATION = "exampleproj.wsgi.application"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

POOL = os.environ.get("EXAMPLE_POOL") == "1"

DATABASES = {
    "default": {
        "ENGINE": "vaultdb.integrations.django.postgresql",
        "HOST": os.environ.get("PGHOST", "db.internal"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "NAME": os.environ.get("PGDATABASE", "app"),
        # Persistent connections; vaultdb closes those of retired credentials at request
        # boundaries. With Django's pool (5.1+), CONN_MAX_AGE must be 0.
        "CONN_MAX_AGE": 0 if POOL else 60,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {"pool": {"min_size": 1, "max_size": 4}} if POOL else {},
        "VAULT": {
            "role": os.environ.get("VAULTDB_ROLE", "app-rw"),
            "auth": {"method": "kubernetes", "role": os.environ.get("VAULTDB_AUTH_ROLE", "app")},
            "set_role": "app_owner",
        },
        # manage.py test: a Vault role whose users may create the test database.
        "TEST": {"VAULT": {"role": os.environ.get("VAULTDB_TEST_ROLE", "app-test"),
                           "set_role": os.environ.get("VAULTDB_TEST_SET_ROLE", "app_test_owner")}},
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"vaultdb": {"handlers": ["console"], "level": "INFO"}},
}
