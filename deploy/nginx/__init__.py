"""nginx in front of the app: `python -m deploy.nginx [render|check|run]` (config.py does the work)."""

from .config import MIB, PROTECTED_MEDIA, NginxSetupError, Site, check, command, render, write

__all__ = ["MIB", "PROTECTED_MEDIA", "NginxSetupError", "Site", "check", "command", "render", "write"]
