from django.apps import AppConfig


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"

    def ready(self):
        from . import checks, throttling, tokens  # noqa: F401  (deploy checks; the token cache's and sign-in counters' signals)
