import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from graph import writes
from transcription.models import Recording


class Command(BaseCommand):
    help = (
        "Rebuild users' knowledge graphs from the database (the source of truth): their graph "
        "nodes are removed, then every transcribed recording is written again."
    )

    def add_arguments(self, parser):
        parser.add_argument("usernames", nargs="*", help="Whose graph to rebuild.")
        parser.add_argument("--all", action="store_true", help="Rebuild every user's graph.")

    def handle(self, *args, usernames, all, **options):
        users = get_user_model().objects.order_by("pk")
        if not all:
            if not usernames:
                raise CommandError("Name the users whose graph to rebuild, or pass --all.")
            users = users.filter(username__in=usernames)
            missing = set(usernames) - {u.username for u in users}
            if missing:
                raise CommandError(f"No such user: {', '.join(sorted(missing))}")
        for user in users:
            started = time.monotonic()
            writes.delete_user_graph(str(user.pk))
            ids = (
                Recording.objects.owned_by(user)
                .filter(status=Recording.Status.DONE)
                .order_by("pk")
                .values_list("pk", flat=True)
            )
            written = sum(writes.write_recording(pk) for pk in ids)
            self.stdout.write(f"{user.username}: {written} recordings written in {time.monotonic() - started:.1f} s")
