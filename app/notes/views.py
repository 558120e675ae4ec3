"""GET /api/notes/ lists the latest notes, POST /api/notes/ {"text": "..."} adds one."""

import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from notes.models import TEXT_MAX_LENGTH, Note

LIST_LIMIT = 50


def bad_request(reason: str) -> JsonResponse:
    return JsonResponse({"error": reason}, status=400)


@csrf_exempt  # a JSON API without cookies or sessions: there is nothing to forge
@require_http_methods(["GET", "HEAD", "POST"])
def notes(request: HttpRequest) -> JsonResponse:
    if request.method == "POST":
        return create_note(request)
    latest = Note.objects.all()[:LIST_LIMIT]
    return JsonResponse({"notes": [note.as_json() for note in latest]})


def create_note(request: HttpRequest) -> JsonResponse:
    try:
        payload = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return bad_request("the body must be JSON")
    text = payload.get("text") if isinstance(payload, dict) else None
    if not isinstance(text, str) or not text.strip():
        return bad_request('expected {"text": "<non-empty string>"}')
    if len(text) > TEXT_MAX_LENGTH:
        return bad_request(f"text is longer than {TEXT_MAX_LENGTH} characters")
    note = Note.objects.create(text=text)
    return JsonResponse(note.as_json(), status=201)
