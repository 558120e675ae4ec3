from celery import shared_task
from orders.models import Order


@shared_task
def fulfil(reference: str) -> None:
    Order.objects.get_or_create(reference=reference)
