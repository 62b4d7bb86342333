from django.db import models


class Visit(models.Model):
    database_user = models.CharField(max_length=128)
    pid = models.IntegerField()
    at = models.DateTimeField(auto_now_add=True)
