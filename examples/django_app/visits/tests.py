"""Run by ``manage.py test``: proves the test database works with a Vault test role."""

from django.db import connection
from django.test import TestCase

from visits.models import Visit


class VisitTests(TestCase):
    def test_writes_to_the_test_database(self) -> None:
        Visit.objects.create(database_user="x", pid=1)
        self.assertEqual(Visit.objects.count(), 1)
        self.assertTrue(connection.settings_dict["NAME"].startswith("test_"))
        with connection.cursor() as cursor:
            cursor.execute("SELECT session_user, current_user")
            session_user, current_user = cursor.fetchone()
        self.assertTrue(session_user.startswith("v-"))
        print(f"\nVAULTDB-TEST-USER {session_user} {current_user}")
