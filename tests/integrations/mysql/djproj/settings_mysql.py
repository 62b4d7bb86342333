"""A Django project on MariaDB through ``vaultdb.integrations.django.mysql``.

Everything comes from the environment, as in a deployment: ``MYSQL_HOST``/``MYSQL_PORT``/
``MYSQL_DATABASE``, and for vaultdb ``VAULT_ADDR``, ``VAULT_TOKEN``, ``VAULTDB_ROLE``,
``VAULTDB_MOUNT``. ``DJPROJ_PYMYSQL=1`` runs the same project on PyMySQL's MySQLdb shim.
"""

import os

if os.environ.get("DJPROJ_PYMYSQL") == "1":
    import pymysql

    pymysql.install_as_MySQLdb()

SECRET_KEY = "test-only-not-a-secret"
INSTALLED_APPS = ["vaultdb.integrations.django", "notes"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": {
        "ENGINE": "vaultdb.integrations.django.mysql",
        "HOST": os.environ["MYSQL_HOST"],
        "PORT": os.environ["MYSQL_PORT"],
        "NAME": os.environ["MYSQL_DATABASE"],
        "CONN_MAX_AGE": None,  # persistent: retired at request boundaries by vaultdb
        "CONN_HEALTH_CHECKS": True,
        "VAULT": {"auth": {"method": "token"}},
    }
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"vaultdb": {"handlers": ["console"], "level": "INFO"}},
}
