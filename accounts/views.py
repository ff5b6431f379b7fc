from django import forms
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from .models import ApiToken


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, initial="My script")


@login_required
@require_http_methods(["GET", "POST"])
def profile(request):
    """The profile page: API tokens (a new key is shown once, right after it is created)."""
    new_key = ""
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        _, new_key = ApiToken.issue(request.user, form.cleaned_data["name"])
        form = TokenForm()
    tokens = ApiToken.objects.owned_by(request.user)
    status = 400 if form.errors else 200
    return render(request, "accounts/profile.html", {"form": form, "tokens": tokens, "new_key": new_key}, status=status)


@login_required
@require_POST
def revoke_token(request, pk: int):
    get_object_or_404(ApiToken.objects.owned_by(request.user), pk=pk).delete()
    return redirect("profile")
