from django.urls import include, path

from aiia import health, views

urlpatterns = [
    path("", views.index, name="index"),
    # Normally answered by HealthCheckMiddleware before host validation; routed here too so
    # that reverse("healthz") works and a reordered middleware list still serves it.
    path("healthz/", health.healthz, name="healthz"),
    path("api/notes/", include("notes.urls")),
]
