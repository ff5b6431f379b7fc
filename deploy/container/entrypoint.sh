#!/bin/sh
# One image, every process: the first argument names the role (the Procfile's names, plus beat and
# migrate); anything after it is passed on. An unknown first argument runs as a command (`bash`).
set -eu
role="${1:-web}"
[ "$#" -gt 0 ] && shift
# healthcheck.py reads the role from here: HEALTHCHECK runs outside this script's environment.
echo "$role" > /tmp/role

case "$role" in
  web)
    # --proxy-headers: the client's address comes from X-Forwarded-For set by nginx / the Ingress.
    exec daphne -b 0.0.0.0 -p "${APP_PORT:-8000}" --proxy-headers "$@" assistant_site.asgi:application ;;
  worker)
    # Transcriptions (the default queue, `celery`), and the reaper's `maintenance` queue (every
    # worker takes it: settings.CELERY_TASK_ROUTES). No -B here, unlike the Procfile: workers are
    # scaled to many replicas and the periodic sweeps must run once, in the `beat` role.
    exec celery -A assistant_site worker -Q celery,maintenance --loglevel=INFO "$@" ;;
  beat)
    exec celery -A assistant_site beat --schedule "${VAR_DIR:-/app/var}/celerybeat-schedule" --loglevel=INFO "$@" ;;
  ai)
    # Workflow runs only, without a Whisper model (as the Procfile's `ai`).
    WHISPER_PRELOAD=false exec celery -A assistant_site worker -Q workflows,maintenance \
      --concurrency "${WORKFLOW_WORKERS:-2}" -n "ai@%h" --loglevel=INFO "$@" ;;
  llm)
    # Reachable from the other containers: the container's network is the boundary.
    LLM_HOST="${LLM_HOST:-0.0.0.0}" exec python -m workflows.local_llm "$@" ;;
  migrate)
    # Once per release (a Job, a compose one-shot), before the web replicas take traffic.
    python manage.py migrate --noinput
    exec python manage.py graph_schema --wait 180 ;;
  manage)
    exec python manage.py "$@" ;;
  *)
    exec "$role" "$@" ;;
esac
