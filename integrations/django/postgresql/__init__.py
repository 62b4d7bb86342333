"""``ENGINE = "vaultdb.integrations.django.postgresql"``: Django loads ``.base``."""
