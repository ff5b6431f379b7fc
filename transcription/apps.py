from django.apps import AppConfig


class TranscriptionConfig(AppConfig):
    name = "transcription"

    def ready(self):
        from celery.signals import worker_process_init

        worker_process_init.connect(load_model_at_start, weak=False)


def load_model_at_start(**kwargs):
    # Each worker process loads the model once, before its first job rather than during it
    # (not the workflow worker's, which never transcribes: WHISPER_PRELOAD=false in the Procfile).
    from django.conf import settings

    from . import engine

    if settings.WHISPER_PRELOAD:
        engine.get_model()
