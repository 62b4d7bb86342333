import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exampleproj.settings")
application = get_wsgi_application()

if os.environ.get("EXAMPLE_WARMUP") == "1":
    # Fetch credentials at import: under gunicorn --preload that happens in the master before
    # it forks, which is exactly what fork safety is about (workers never use or revoke them).
    from vaultdb.integrations.django import provider_for

    provider_for("default").start()
