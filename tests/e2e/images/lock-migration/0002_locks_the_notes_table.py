"""Test variant (tests/e2e/images/lock-migration): a migration that needs an ACCESS
EXCLUSIVE lock on the notes table, as an ALTER TABLE would, and changes nothing.

It waits behind any transaction that has read the table; while it waits, every request that
reads the table queues behind it (PostgreSQL grants locks in order), which is what a lock
timeout bounds.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]

    operations = [
        migrations.RunSQL("LOCK TABLE notes_note IN ACCESS EXCLUSIVE MODE",
                          reverse_sql=migrations.RunSQL.noop),
    ]
