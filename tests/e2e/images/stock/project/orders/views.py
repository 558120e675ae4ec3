from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from orders.models import Order
from orders.tasks import fulfil


def home(request):
    return HttpResponse("shop\n", content_type="text/plain")


@csrf_exempt
@require_POST
def place_order(request):
    reference = request.POST["reference"]
    fulfil.delay(reference)
    return JsonResponse({"queued": reference}, status=202)


def order(request, reference):
    found = Order.objects.filter(reference=reference).first()
    if found is None:
        return JsonResponse({"reference": reference, "fulfilled": False}, status=404)
    return JsonResponse({"reference": reference, "fulfilled": True})
