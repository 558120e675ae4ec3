"""Test variant (tests/e2e/images/bad-migration): a migration that always fails.

It runs in a transaction (PostgreSQL), so the failure leaves the schema as it was.
"""

from django.db import migrations


def fail(apps, schema_editor):
    raise RuntimeError("this migration fails on purpose (test image bad-migration)")


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]

    operations = [
        migrations.RunSQL("CREATE TABLE notes_never_created (id bigserial PRIMARY KEY)"),
        migrations.RunPython(fail, migrations.RunPython.noop),
    ]
