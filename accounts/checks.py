"""Django's deploy checks that look for its security middleware by dotted path, run again as if it
were listed that way: the project lists subclasses of it instead (assistant_site/middleware.py, on
the event loop under ASGI), so Django's own run of these passes vacuously and they are silenced in
settings (SILENCED_SYSTEM_CHECKS). Without this, `check --deploy` would no longer warn about HSTS,
the SSL redirect, X-Frame-Options, the referrer policy or the CSRF cookie.
"""

from django.conf import settings
from django.core.checks import Tags, register
from django.core.checks.security import base, csrf
from django.test.utils import override_settings

# Ours (by dotted path, so accounts imports no project wiring) and the Django class each extends.
SUBCLASSED_MIDDLEWARE = {
    "assistant_site.middleware.SecurityMiddleware": "django.middleware.security.SecurityMiddleware",
    "assistant_site.middleware.XFrameOptionsMiddleware": "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "assistant_site.middleware.CsrfViewMiddleware": "django.middleware.csrf.CsrfViewMiddleware",
}

MIDDLEWARE_DEPENDENT_CHECKS = [
    base.check_sts,
    base.check_sts_include_subdomains,
    base.check_sts_preload,
    base.check_content_type_nosniff,
    base.check_ssl_redirect,
    base.check_xframe_deny,
    base.check_referrer_policy,
    base.check_cross_origin_opener_policy,
    csrf.check_csrf_cookie_secure,
]


@register(Tags.security, deploy=True)
def check_security_of_subclassed_middleware(app_configs, **kwargs):
    equivalents = [SUBCLASSED_MIDDLEWARE[name] for name in settings.MIDDLEWARE if name in SUBCLASSED_MIDDLEWARE]
    if not equivalents:
        return []
    with override_settings(MIDDLEWARE=[*settings.MIDDLEWARE, *equivalents]):
        return [message for check in MIDDLEWARE_DEPENDENT_CHECKS for message in check(app_configs)]
