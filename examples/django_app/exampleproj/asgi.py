import os

from django.core.asgi import get_asgi_application
from vaultdb.integrations.asgi import VaultDBLifespan

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exampleproj.settings")
# Django's ASGI handler has no lifespan: VaultDBLifespan gives it a shutdown that revokes.
application = VaultDBLifespan(get_asgi_application())
