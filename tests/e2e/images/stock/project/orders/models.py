from django.db import models


class Order(models.Model):
    """Written by the worker (orders.tasks.fulfil), not by the web view."""

    reference = models.CharField(max_length=64, unique=True)
    fulfilled_at = models.DateTimeField(auto_now_add=True)
