"""Settings come from the environment; a malformed value stops the app at start, naming the variable."""

import ast
import json
import os
import re
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


# --- Every setting is documented ------------------------------------------------------------------
# The settings are loaded in a clean environment, in a process that reports 12 cores (so a default
# computed from the machine cannot pass for a literal by chance). Each variable a reader read
# (assistant_site/env.py records it with the default the code gave) must have a row in the README's
# Settings table showing that default:
# - a literal in backticks, the first one in the cell (`604800` (7 days), `10800` s); numbers compare
#   as numbers, booleans are `true`/`false`, lists comma-separated, paths relative to the repository;
# - a cell starting with – : no default (empty), the rest of the cell says what happens then;
# - in words, for the few defaults computed at start: see DEFAULT_PHRASES.
# A row that holds several variables (`A`, `B`) holds their defaults in the same order.
FAKE_CORES = 12
DEFAULT_PHRASES = {
    "number of cores": FAKE_CORES,
    "half the cores": FAKE_CORES // 2,
}
FIRST_OF = re.compile(r"the first of `(\w+)`")


def read_defaults() -> dict[str, object]:
    code = (
        f"import json, os; os.cpu_count = lambda: {FAKE_CORES}; import assistant_site.settings; "
        "from assistant_site.env import DEFAULTS; print(json.dumps(DEFAULTS))"
    )
    # SECRET_KEY set (its default is still recorded as empty) so that no key file is written.
    env = {"PATH": os.environ["PATH"], "SECRET_KEY": "unused"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def split_cell(cell: str) -> list[str]:
    """`a`, –, `b,c` -> ["`a`", "–", "`b,c`"]: commas inside backticks do not split."""
    parts, current, quoted = [], "", False
    for i, char in enumerate(cell):
        if char == "`":
            quoted = not quoted
        if char == "," and not quoted and cell[i + 1 : i + 2] == " ":
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [*parts, current.strip()]


def readme_settings() -> dict[str, str]:
    """{variable: its default cell} from the README's Settings table."""
    section = (ROOT / "README.md").read_text().split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    documented = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) != 3 or not cells[0].startswith("`"):
            continue  # prose, the header or its rule
        names = [name.strip("`") for name in split_cell(cells[0])]
        defaults = split_cell(cells[1])
        assert len(defaults) == len(names), f"README row {names}: one default per variable, got {cells[1]!r}"
        for name, default in zip(names, defaults, strict=True):
            assert name not in documented, f"{name} has two rows in the README's Settings table"
            documented[name] = default
    return documented


def procfile_defaults() -> dict[str, str]:
    """Variables the Procfile reads itself (${NAME:-default}), with their defaults."""
    return dict(re.findall(r"\$\{(\w+):-([^}]*)\}", (ROOT / "Procfile").read_text()))


def shown(value: object) -> str:
    """A default as the README writes it."""
    if value in ("", []):
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(value)
    return str(value).replace(f"{ROOT}/", "")


def documented_value(cell: str, defaults: dict[str, object]) -> object:
    """The default a README cell states, in the form shown() gives (or a number)."""
    if cell.startswith("–"):
        return "–"
    if cell.startswith("`"):
        return cell.split("`")[1]
    if cell in DEFAULT_PHRASES:
        return DEFAULT_PHRASES[cell]
    if match := FIRST_OF.fullmatch(cell):
        return shown(defaults[match[1]][0].partition("=")[0])
    raise AssertionError(f"README default {cell!r}: write the value in backticks, – for none, or a known phrase")


def same_default(documented: object, actual: object) -> bool:
    if isinstance(actual, int | float) and not isinstance(actual, bool):
        try:
            return float(documented) == actual
        except ValueError:
            return False
    return documented == shown(actual)


@pytest.fixture(scope="module")
def code_defaults():
    return read_defaults()


def test_every_setting_is_in_the_readme_with_its_default(code_defaults):
    documented = readme_settings()
    missing = sorted(set(code_defaults) - set(documented))
    assert not missing, f"settings read from the environment but not in the README's Settings table: {missing}"
    wrong = {
        name: (documented[name], shown(default))
        for name, default in code_defaults.items()
        if not same_default(documented_value(documented[name], code_defaults), default)
    }
    assert not wrong, f"README default differs from the code's (README, code): {wrong}"


def test_every_documented_setting_is_read_with_that_default(code_defaults):
    documented = readme_settings()
    process_level = procfile_defaults()
    unread = sorted(set(documented) - set(code_defaults) - set(process_level))
    assert not unread, f"in the README's Settings table but read by neither the settings nor the Procfile: {unread}"
    wrong = {
        name: (documented[name], default)
        for name, default in process_level.items()
        if name in documented and documented_value(documented[name], code_defaults) != default
    }
    assert not wrong, f"README default differs from the Procfile's (README, Procfile): {wrong}"
    undocumented = sorted(set(process_level) - set(documented))
    assert not undocumented, f"read by the Procfile but not in the README's Settings table: {undocumented}"


def test_settings_read_the_environment_only_through_the_readers():
    source = (ROOT / "assistant_site" / "settings.py").read_text()
    stray = [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv")
    ]
    assert not stray, f"assistant_site/settings.py reads os.environ directly on lines {stray}: use env.py's readers"
