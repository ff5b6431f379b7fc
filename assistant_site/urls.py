from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from accounts import views as account_views
from transcription import openai_compat

from . import admin as _user_admin  # noqa: F401  (user deletion through actions/, before admin.site.urls)
from . import views
from .api import api
from .metrics import metrics_view

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="recording-list", permanent=False)),
    path("accounts/signup/", views.signup, name="signup"),
    # Before Django's auth URLs and the admin's, so these sign-ins are throttled (accounts/throttling.py).
    path("accounts/login/", account_views.login, name="login"),
    path("admin/login/", account_views.login_throttled(admin.site.login)),
    path("accounts/delete/", views.delete_account, name="delete-account"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("accounts/", include("accounts.urls")),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("recordings/", include("transcription.urls")),
    path("graph/", include("graph.urls")),
    path("workflows/", include("workflows.urls")),
    path("api/", api.urls),
    path("v1/audio/transcriptions", openai_compat.transcriptions, name="openai-transcriptions"),
    path("admin/", admin.site.urls),
]

if settings.SILK_ENABLED:  # off: not mounted, /silk/ is a 404 (assistant_site/profiling.py)
    urlpatterns.append(path("silk/", include("silk.urls", namespace="silk")))
