import asyncio
from concurrent.futures import ThreadPoolExecutor

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import User
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from accounts import throttling
from accounts.views import throttled_page
from actions.accounts import delete_user
from graph.connection import graph_is_reachable

from .health import database_is_reachable, llm_is_reachable, redis_is_reachable


def signup(request):
    """Sign-up: the password validators (settings.AUTH_PASSWORD_VALIDATORS) apply; an address may
    create SIGNUPS_PER_ADDRESS_PER_HOUR accounts (each account has its own quotas)."""
    if request.user.is_authenticated:
        return redirect("recording-list")
    form: UserCreationForm[User] = UserCreationForm(request.POST or None)
    if request.method == "POST":
        address = throttling.client_address(request)
        if wait := throttling.blocked_for(throttling.signup_per_address(), address):
            error = throttling.Throttled(
                wait, f"Too many new accounts from your address. Try again in {throttling.wait_phrase(wait)}."
            )
            return throttled_page(request, error)
        if form.is_valid():
            user = form.save()
            throttling.hit(throttling.signup_per_address(), address)
            login(request, user)
            return redirect("recording-list")
    return render(request, "registration/signup.html", {"form": form})


class DeleteAccountForm(forms.Form):
    password = forms.CharField(widget=forms.PasswordInput, help_text="Your password, to confirm.")

    def __init__(self, user, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self):
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise forms.ValidationError("That is not your password.")
        return password


@login_required
@require_http_methods(["GET", "POST"])
def delete_account(request):
    """Delete my account: everything I made goes with it (actions.accounts.delete_user)."""
    form = DeleteAccountForm(request.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = request.user
        logout(request)
        delete_user(user)
        messages.info(request, "Your account and everything in it were deleted.")
        return redirect("login")
    status = 400 if form.errors else 200
    return render(request, "accounts/delete.html", {"form": form}, status=status)


LOOPBACK = {"127.0.0.1", "::1"}


@require_GET
async def healthz(request):
    """Liveness, public: the process answers. A constant, no dependency is asked (anyone may call it
    as often as they like); /readyz has the details."""
    return JsonResponse({"status": "ok"})


# The checks' own threads, not the event loop's default executor: a check that hangs keeps its
# thread until its client gives up, and nothing (a loop shutting down included) waits for it.
_CHECK_THREADS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="readiness")


async def _bounded(check, timeout: float) -> bool:
    # In a thread, so a dependency that hangs costs this check `timeout`, not the answer.
    try:
        return await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(_CHECK_THREADS, check), timeout)
    except TimeoutError:
        return False


@require_GET
async def readyz(request):
    """Readiness of each part the app needs, 503 naming the one that is down: for staff or a caller
    on this machine (the container's healthcheck), since each call queries every dependency. The
    checks run at once, each at most HEALTH_CHECK_TIMEOUT_SECONDS."""
    if request.META.get("REMOTE_ADDR") not in LOOPBACK and not (await request.auser()).is_staff:
        return JsonResponse(
            {"detail": "Readiness details are for staff or this machine; /healthz is public."}, status=403
        )
    checks = {
        "database": database_is_reachable,
        "redis": redis_is_reachable,
        "neo4j": graph_is_reachable,
        "llm": llm_is_reachable,
    }
    timeout = settings.HEALTH_CHECK_TIMEOUT_SECONDS
    results = await asyncio.gather(*(_bounded(check, timeout) for check in checks.values()))
    answer = dict(zip(checks, results, strict=True))
    return JsonResponse(answer, status=200 if all(results) else 503)
