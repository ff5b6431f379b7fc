"""Settings come from the environment; a malformed value stops the app at start, naming the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def start_django(**env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.MAX_UPLOAD_BYTES, settings.WHISPER_BEAM_SIZE)",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "assistant_site.settings", **env},
    )


@pytest.mark.parametrize(
    "name, value",
    [
        ("MAX_UPLOAD_MB", "lots"),
        ("WHISPER_BEAM_SIZE", "0"),
        ("DEBUG", "perhaps"),
        ("REDIS_URL", "localhost:6379"),
        ("NEO4J_BOLT_URL", "http://127.0.0.1:7474"),
        ("WHISPER_COMPUTE_TYPE", "int3"),
    ],
)
def test_a_malformed_setting_fails_loudly(name, value, tmp_path):
    result = start_django(**{name: value, "VAR_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert name in result.stderr


def test_defaults_work_and_values_are_read(tmp_path):
    result = start_django(VAR_DIR=str(tmp_path), MAX_UPLOAD_MB="2", WHISPER_BEAM_SIZE="3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(2 * 1024 * 1024), "3"]
