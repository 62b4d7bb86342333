"""Simulate requests on a persistent connection until the credentials rotated N times."""

import json
import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand
from django.db import close_old_connections, connection

from notes.models import Note


class Command(BaseCommand):
    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--users", type=int, default=3)
        parser.add_argument("--timeout", type=float, default=60)

    def handle(self, *args: Any, users: int, timeout: float, **options: Any) -> None:
        seen: list[str] = []
        errors: list[str] = []
        requests = 0
        driver = ""
        deadline = time.monotonic() + timeout
        while len(seen) < users and time.monotonic() < deadline:
            close_old_connections()  # request_started
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT SUBSTRING_INDEX(USER(), '@', 1)")
                    (user,) = cursor.fetchone()
                Note.objects.create(database_user=user)
                driver = type(connection.connection).__module__
                if user not in seen:
                    seen.append(user)
                requests += 1
            except Exception as exc:  # counted: the test wants zero
                errors.append(repr(exc))
            close_old_connections()  # request_finished
            time.sleep(0.02)  # request pacing (keeps the row count small), not a wait
        self.stdout.write("RESULT " + json.dumps(
            {"users": seen, "errors": errors, "requests": requests, "driver": driver}))
