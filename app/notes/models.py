from django.db import models

TEXT_MAX_LENGTH = 500


class Note(models.Model):
    """A line of text: the smallest model that shows the release's schema is in place."""

    text = models.CharField(max_length=TEXT_MAX_LENGTH)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "text": self.text, "created_at": self.created_at.isoformat()}
