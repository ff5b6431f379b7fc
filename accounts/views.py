from datetime import timedelta
from functools import wraps

from django import forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from . import throttling
from .models import ApiToken


def throttled_page(request, error: throttling.Throttled):
    response = render(request, "registration/throttled.html", {"message": error.message}, status=429)
    response["Retry-After"] = str(error.retry_after)
    return response


def login_throttled(view):
    """A sign-in view that refuses a username or address that used up its failed attempts (429,
    Retry-After) before the password is checked. Failures are counted by a signal (throttling.py)."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if request.method == "POST":
            try:
                throttling.check_login(request, request.POST.get("username", ""))
            except throttling.Throttled as error:
                return throttled_page(request, error)
        return view(request, *args, **kwargs)

    return wrapped


login = login_throttled(auth_views.LoginView.as_view())


class TokenForm(forms.Form):
    EXPIRY_CHOICES = [
        ("", "never"),
        ("7", "in 7 days"),
        ("30", "in 30 days"),
        ("90", "in 90 days"),
        ("365", "in a year"),
    ]

    name = forms.CharField(max_length=100, initial="My script")
    expires_in_days = forms.TypedChoiceField(
        label="Expires", choices=EXPIRY_CHOICES, coerce=int, empty_value=None, required=False, initial="90"
    )

    def expires_at(self):
        days = self.cleaned_data.get("expires_in_days")
        return timezone.now() + timedelta(days=days) if days else None


@login_required
@require_http_methods(["GET", "POST"])
def profile(request):
    """The profile page: API tokens (a new key is shown once, right after it is created)."""
    new_key = ""
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        _, new_key = ApiToken.issue(request.user, form.cleaned_data["name"], form.expires_at())
        form = TokenForm()
    tokens = ApiToken.objects.owned_by(request.user)
    status = 400 if form.errors else 200
    return render(request, "accounts/profile.html", {"form": form, "tokens": tokens, "new_key": new_key}, status=status)


@login_required
@require_POST
def revoke_token(request, pk: int):
    get_object_or_404(ApiToken.objects.owned_by(request.user), pk=pk).delete()
    return redirect("profile")
