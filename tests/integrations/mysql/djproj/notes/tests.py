"""Run by ``manage.py test``: the test database is created and used by a dynamic user."""

from django.db import connection
from django.test import TestCase

from notes.models import Note


class NoteTests(TestCase):
    def test_writes_to_the_test_database(self) -> None:
        Note.objects.create(database_user="x")
        self.assertEqual(Note.objects.count(), 1)
        self.assertTrue(connection.settings_dict["NAME"].startswith("test_"))
        with connection.cursor() as cursor:
            cursor.execute("SELECT SUBSTRING_INDEX(USER(), '@', 1)")
            (user,) = cursor.fetchone()
        self.assertTrue(user.startswith("v-"))
        print(f"\nVAULTDB-TEST-USER {user}")
