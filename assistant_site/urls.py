from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from transcription import openai_compat

from . import views
from .api import api

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="recording-list", permanent=False)),
    path("accounts/signup/", views.signup, name="signup"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("accounts/", include("accounts.urls")),
    path("healthz", views.healthz, name="healthz"),
    path("recordings/", include("transcription.urls")),
    path("graph/", include("graph.urls")),
    path("workflows/", include("workflows.urls")),
    path("api/", api.urls),
    path("v1/audio/transcriptions", openai_compat.transcriptions, name="openai-transcriptions"),
    path("admin/", admin.site.urls),
]
