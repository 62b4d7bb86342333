"""``ENGINE = "vaultdb.integrations.django.mysql"`` (MySQL/MariaDB): Django loads ``.base``."""
