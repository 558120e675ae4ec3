from django.contrib import admin
from django.urls import path
from health_check.views import HealthCheckView
from orders import views

urlpatterns = [
    path("", views.home),
    path("orders/", views.place_order),
    path("orders/<str:reference>/", views.order),
    # django-health-check's README: the database and the cache.
    path("ht/", HealthCheckView.as_view(checks=["health_check.checks.Database",
                                                "health_check.checks.Cache"])),
    path("admin/", admin.site.urls),
]
