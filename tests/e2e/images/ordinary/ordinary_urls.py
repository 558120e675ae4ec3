"""Test variant (tests/e2e/images/ordinary): the health check at /ht/, 204 when the
database and the cache answer (the reference app's checks), 503 otherwise."""

from aiia import health, views
from django.http import HttpRequest, HttpResponse
from django.urls import include, path


async def ht(request: HttpRequest) -> HttpResponse:
    answer = await health.healthz(request)
    return HttpResponse(status=204 if answer.status_code == 200 else 503)


urlpatterns = [
    path("", views.index),
    path("ht/", ht),
    path("api/notes/", include("notes.urls")),
]
