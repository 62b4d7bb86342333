from django.db import models


class Note(models.Model):
    database_user = models.CharField(max_length=128)
    at = models.DateTimeField(auto_now_add=True)
