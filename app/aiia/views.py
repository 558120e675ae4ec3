from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_safe


@require_safe
async def index(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"release": settings.RELEASE, "environment": settings.ENVIRONMENT})
