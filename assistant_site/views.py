from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import User
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from graph.connection import graph_is_reachable

from .health import database_is_reachable, llm_is_reachable, redis_is_reachable


def signup(request):
    if request.user.is_authenticated:
        return redirect("recording-list")
    form: UserCreationForm[User] = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user)
        return redirect("recording-list")
    return render(request, "registration/signup.html", {"form": form})


@require_GET
def healthz(request):
    """Public liveness of each part the app needs; 503 when any is down."""
    checks = {
        "database": database_is_reachable(),
        "redis": redis_is_reachable(),
        "neo4j": graph_is_reachable(),
        "llm": llm_is_reachable(),
    }
    return JsonResponse(checks, status=200 if all(checks.values()) else 503)
