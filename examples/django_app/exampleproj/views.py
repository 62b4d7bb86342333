"""The page: which database user this process uses, and its lease time left. Never a secret."""

import os
import time

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.html import escape
from vaultdb.integrations.django import provider_for
from visits.models import Visit


def index(request: HttpRequest) -> HttpResponse:
    hold = min(float(request.GET.get("hold", "0") or 0), 2.0)  # lets tests fill every worker
    with connection.cursor() as cursor:
        cursor.execute("SELECT session_user, current_user")
        session_user, current_user = cursor.fetchone()
    Visit.objects.create(database_user=session_user, pid=os.getpid())
    if hold:
        time.sleep(hold)
    status = provider_for("default").status()
    data = {
        "pid": os.getpid(),
        "session_user": session_user,
        "current_user": current_user,
        "generation": status.generation,
        "lease_seconds_left": round(status.lease_seconds_left or 0.0, 1),
        "visits": Visit.objects.count(),
    }
    if request.GET.get("format") == "json":
        return JsonResponse(data)
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>"
                   for k, v in data.items())
    return HttpResponse(f"<!doctype html><title>vaultdb example</title>"
                        f"<h1>Database user of process {os.getpid()}</h1><table>{rows}</table>")
