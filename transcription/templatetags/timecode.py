from django import template

register = template.Library()


@register.filter
def timecode(seconds) -> str:
    """1:02.5 for 62.5 s; 1:00:02 for an hour and two seconds."""
    if seconds is None:
        return ""
    seconds = float(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{int(hours)}:{int(minutes):02d}:{int(secs):02d}"
    return f"{int(minutes)}:{secs:04.1f}"
