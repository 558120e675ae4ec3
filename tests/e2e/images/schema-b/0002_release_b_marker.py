"""Test variant (tests/e2e/images/schema-b): a table that only release B's migration makes.

Raw SQL, not a model: the app's models are unchanged, so the previous release keeps working
on this schema (an additive, expand-only migration) and `migrate` reports no model drift.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]

    operations = [
        migrations.RunSQL(
            "CREATE TABLE notes_release_b_marker ("
            " id bigserial PRIMARY KEY,"
            " created_at timestamptz NOT NULL DEFAULT now())",
            reverse_sql="DROP TABLE notes_release_b_marker",
        ),
    ]
