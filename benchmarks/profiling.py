"""Profiles of the running app: a py-spy flame graph of a `make run` process, memray of one transcription.

    make flamegraph PROCESS=worker SECONDS=30          # or: .venv/bin/python benchmarks/profiling.py flamegraph ...
    .venv/bin/python benchmarks/profiling.py flamegraph --process web --seconds 30 --py-spy-args="--idle"
    .venv/bin/python benchmarks/profiling.py flamegraph --pid 12345 --seconds 10
    make memray-job RECORDING=42                        # or: ... profiling.py memray-job --recording 42
    .venv/bin/python benchmarks/profiling.py memray-job --file speech.wav

flamegraph: PROCESS is a Procfile name (web, worker, ai, llm). Its process is found by the command the
Procfile starts (the one after `exec`), matched against every running process's command line; with
its children (`--subprocesses`: the Daphne processes under `assistant_site.serve`, the prefork pool
under a Celery worker). py-spy samples it for SECONDS and writes, under var/profiles/, a flame graph
(SVG, open it in a browser) and the same samples as speedscope JSON (https://www.speedscope.app),
named PROCESS-UTC-time. Two py-spy processes record at once, each `--nonblocking` (only one could
pause the process), so both files cover the same seconds. py-spy reads another process's memory:
it needs root or ptrace permission (`kernel.yama.ptrace_scope`).

memray-job: decodes and transcribes one recording's audio (or a file) in this process, as a worker's
job does (engine.decode_audio, engine.transcribe with the recording's options), under memray; the
model is loaded first, as a worker preloads it (`--with-model-load` counts it too). Nothing is
written to the database. Writes the capture (.bin) and memray's flame graph (.html) under var/profiles/.
"""

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PROFILES = ROOT / "var" / "profiles"
PYTHON_PROCESSES = {"web", "worker", "ai", "llm"}  # the others (nginx, redis, postgres, neo4j) are not Python


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _bin(name: str) -> str:
    """A tool of this venv (py-spy, memray), whatever the PATH says."""
    return str(Path(sys.executable).parent / name)


# --- finding a Procfile process ------------------------------------------------------------------------


def procfile_command(procfile: Path, name: str) -> list[str]:
    """The command a Procfile entry runs: the one after its last `exec`, as words."""
    for line in procfile.read_text().splitlines():
        entry, _, command = line.partition(":")
        if entry.strip() == name:
            words = shlex.split(command)
            if "exec" in words:
                words = words[len(words) - words[::-1].index("exec") :]
            return [w for w in words if not re.fullmatch(r"[A-Z_]+=.*", w)]  # no leading VAR=value
    raise SystemExit(f"no process {name!r} in {procfile}")


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def runs(argv: list[str], command: list[str]) -> bool:
    """Whether a process's argv is `command`: its program (by name: a script's interpreter may come
    first) then the same arguments, where an argument with a shell variable matches any word."""
    program, args = os.path.basename(command[0]), command[1:]
    if len(argv) < len(args) + 1:
        return False
    tail = argv[len(argv) - len(args) :] if args else []
    before = argv[: len(argv) - len(args)]
    if not before or os.path.basename(before[-1]) != program:
        return False
    return all("$" in want or want == got for want, got in zip(args, tail, strict=True))


def find_process(command: list[str]) -> int:
    """The pid running `command` whose parent does not (a prefork pool's children share its argv)."""
    own = {os.getpid(), os.getppid()}
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and int(p.name) not in own]
    matching = {pid for pid in pids if runs(_cmdline(pid), command)}
    roots = sorted(pid for pid in matching if _parent(pid) not in matching)
    if len(roots) != 1:
        found = "none is running" if not roots else f"several are: {roots} (pick one with --pid)"
        raise SystemExit(f"looking for `{shlex.join(command)}`: {found}")
    return roots[0]


# --- py-spy ---------------------------------------------------------------------------------------------


def flamegraph(pid: int, seconds: int, name: str, out: Path, extra: list[str]) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    base = out / f"{name}-{_stamp()}"
    svg, speedscope = base.with_suffix(".svg"), base.with_suffix(".speedscope.json")
    common = ["record", "--pid", str(pid), "--duration", str(seconds), "--subprocesses", "--nonblocking", *extra]
    recorders = [
        subprocess.Popen([_bin("py-spy"), *common, "--format", fmt, "--output", str(path)])
        for fmt, path in (("flamegraph", svg), ("speedscope", speedscope))
    ]
    codes = [recorder.wait() for recorder in recorders]
    if any(codes) or not svg.exists() or not speedscope.exists():
        raise SystemExit(f"py-spy failed (exit codes {codes}); it needs root or ptrace permission")
    return svg, speedscope


def flamegraph_command(args) -> None:
    if args.pid:
        pid, name = args.pid, args.process or f"pid{args.pid}"
    else:
        if not args.process:
            raise SystemExit("give --process (a Procfile name) or --pid")
        if args.procfile == ROOT / "Procfile" and args.process not in PYTHON_PROCESSES:
            raise SystemExit(f"{args.process} is not a Python process; py-spy profiles {sorted(PYTHON_PROCESSES)}")
        pid, name = find_process(procfile_command(args.procfile, args.process)), args.process
    print(f"recording {name} (pid {pid} and its children) for {args.seconds} s", flush=True)
    for path in flamegraph(pid, args.seconds, name, args.out, shlex.split(args.py_spy_args)):
        print(path)


# --- memray ---------------------------------------------------------------------------------------------


def memray_job(args) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant_site.settings")
    import django

    django.setup()
    import memray

    from transcription import engine
    from transcription.models import Recording

    if args.recording:
        recording = Recording.objects.get(pk=args.recording)
        source, options, name = recording.audio.path, recording.options, f"job-{recording.pk}"
    else:
        source, options, name = str(args.file), {}, f"job-{Path(args.file).stem}"
    parsed = engine.Options.from_dict(options).resolved()
    if not args.with_model_load:
        engine.get_model(parsed.model, parsed.compute_type)
    args.out.mkdir(parents=True, exist_ok=True)
    capture = args.out / f"{name}-{_stamp()}.bin"
    started = time.monotonic()
    with memray.Tracker(capture, native_traces=args.native):
        audio = engine.decode_audio(source)
        result = engine.transcribe(audio, parsed)
    print(
        f"{len(audio) / engine.SAMPLE_RATE:.1f} s of audio, {len(result.segments)} segments, "
        f"{time.monotonic() - started:.1f} s under memray"
    )
    html = capture.with_suffix(".html")
    subprocess.run([_bin("memray"), "flamegraph", "--force", "-o", str(html), str(capture)], check=True)
    print(capture)
    print(html)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    spy = commands.add_parser("flamegraph", help="py-spy flame graph of a running process")
    spy.add_argument("--process", help="a Procfile name: web, worker, ai, llm")
    spy.add_argument("--pid", type=int, help="a pid instead (and its children)")
    spy.add_argument("--seconds", type=int, default=30)
    spy.add_argument("--procfile", type=Path, default=ROOT / "Procfile")
    spy.add_argument("--out", type=Path, default=PROFILES)
    spy.add_argument("--py-spy-args", default="", help="more py-spy options, e.g. '--idle --native --gil'")
    spy.set_defaults(run=flamegraph_command)
    job = commands.add_parser("memray-job", help="memray of one transcription job, in this process")
    source = job.add_mutually_exclusive_group(required=True)
    source.add_argument("--recording", type=int, help="a recording's id: its audio, with its options")
    source.add_argument("--file", type=Path, help="an audio file, with the default options")
    job.add_argument("--with-model-load", action="store_true", help="count loading the model too")
    job.add_argument("--native", action="store_true", help="native frames too (CTranslate2, PyAV)")
    job.add_argument("--out", type=Path, default=PROFILES)
    job.set_defaults(run=memray_job)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
