"""Hostile-user probes against a running stack (`make run`): what issue 13 tried, as one repeatable command.

    .venv/bin/python benchmarks/probes.py                          # against http://127.0.0.1:8000
    .venv/bin/python benchmarks/probes.py --url http://127.0.0.1:8000 --skip flood stranded
    .venv/bin/python benchmarks/probes.py --json var/bench/probes.json

Each probe signs up its own user (as anyone can), tries one abuse and prints one row: what came back
(status or close code), how long it took, and how much the app's processes grew (peak RSS above the
RSS before the probe, sampled every 20 ms, of the Daphne processes or the Celery worker). Nothing here
is asserted: the abuse tests (tests/test_abuse_*.py, tests/test_faults.py) do that; this prints the
figures for the before/after table, run once against each version of the app.
"""

import argparse
import base64
import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import urlencode, urlparse
from urllib.request import HTTPCookieProcessor, Request, build_opener

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MIB = 1024 * 1024
STRONG_PASSWORD = "probe-Passw0rd-long-enough"


# --- processes -----------------------------------------------------------------------------------------


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _pids(predicate) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and predicate(_cmdline(int(p.name)))]


def web_pids() -> list[int]:
    return _pids(lambda cmd: "daphne" in cmd and "assistant_site" in cmd)


def worker_pids() -> list[int]:
    """The transcription worker's processes (its main process and its prefork children)."""
    return _pids(lambda cmd: "celery" in cmd and " worker" in cmd and "workflows" not in cmd)


def rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class PeakRise:
    """Largest rise of the summed RSS of the given processes above its value at entry."""

    def __init__(self, pids):
        self.pids, self.rise = list(pids), 0
        self._stop = threading.Event()

    def _total(self) -> int:
        return sum(rss(pid) for pid in self.pids)

    def _sample(self):
        while not self._stop.wait(0.02):
            self.rise = max(self.rise, self._total() - self.base)

    def __enter__(self):
        self.base = self._total()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# --- a person with a browser ----------------------------------------------------------------------------


class Client:
    def __init__(self, base: str):
        self.base = base.rstrip("/")
        self.jar = http.cookiejar.CookieJar()
        self.opener = build_opener(HTTPCookieProcessor(self.jar))
        self.token = ""
        self.url = ""

    def request(self, method: str, path: str, data: bytes | None = None, headers: dict | None = None, timeout=120):
        headers = {"Referer": self.base + "/", **(headers or {})}
        if self.token and path.startswith("/api/"):
            headers["Authorization"] = f"Bearer {self.token}"
        request = Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with self.opener.open(request, timeout=timeout) as response:
                self.url = response.geturl()  # after redirects
                return response.status, dict(response.headers), response.read()
        except HTTPError as exc:
            self.url = exc.geturl()
            return exc.code, dict(exc.headers), exc.read()

    def cookie(self, name: str) -> str:
        return next((c.value for c in self.jar if c.name == name), "")

    def csrf(self, path: str) -> str:
        _, _, body = self.request("GET", path)
        match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body)
        return match.group(1).decode() if match else self.cookie("csrftoken")

    def post_form(self, path: str, fields: dict, files: dict | None = None):
        fields = {"csrfmiddlewaretoken": self.csrf(path), **fields}
        if not files:
            body = urlencode(fields).encode()
            return self.request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"})
        boundary = uuid.uuid4().hex
        parts = []
        for name, value in fields.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
        for name, (filename, content) in files.items():
            head = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            )
            parts.append(head.encode() + content + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        return self.request(
            "POST", path, b"".join(parts), {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )

    def signup(self, password: str = STRONG_PASSWORD) -> tuple[int, bool]:
        """(status, signed in) for a new user with this password."""
        name = "probe-" + uuid.uuid4().hex[:10]
        status, _, _ = self.post_form(
            "/accounts/signup/", {"username": name, "password1": password, "password2": password}
        )
        self.username = name
        signed_in = bool(self.cookie("sessionid"))
        if signed_in:
            self.token = api_token(self)
        return status, signed_in


_MEMBER: dict[str, Client] = {}


def member(base: str) -> Client:
    """The one signed-in probe user, shared by the probes: sign-ups and sign-ins per address are
    limited (by nginx and the app), so the probes that burst them run last."""
    if base not in _MEMBER:
        client = Client(base)
        client.signup()
        _MEMBER[base] = client
    return _MEMBER[base]


def speech(text: str, path: Path) -> bytes:
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), text], check=True, capture_output=True)
    return path.read_bytes()


def recording_state(client: Client, pk: int) -> dict:
    status, _, body = client.request("GET", f"/api/recordings/{pk}")
    return json.loads(body) if status == 200 else {"status": f"HTTP {status}"}


def uploaded_pk(client: Client) -> int | None:
    """The new recording, from the page the upload redirected to."""
    match = re.search(r"/recordings/(\d+)/$", client.url)
    return int(match.group(1)) if match else None


def api_token(client: Client) -> str:
    _, _, body = client.post_form("/accounts/profile/", {"name": "probe"})
    match = re.search(rb"\b(wa_[A-Za-z0-9_\-]{20,})", body)
    return match.group(1).decode() if match else ""


# --- the probes -----------------------------------------------------------------------------------------


def probe_weak_password(base, work):
    status, signed_in = Client(base).signup(password="a")
    return {"outcome": "accepted" if signed_in else f"refused ({status})"}


def probe_login_burst(base, work):
    victim = Client(base)
    victim.signup()
    attacker = Client(base)
    statuses = [
        attacker.post_form("/accounts/login/", {"username": victim.username, "password": f"wrong{i}"})[0]
        for i in range(30)
    ]
    good = Client(base).post_form("/accounts/login/", {"username": victim.username, "password": STRONG_PASSWORD})[0]
    counts = {s: statuses.count(s) for s in sorted(set(statuses))}
    return {"outcome": f"30 wrong: {counts}; then the right password: {good}"}


def probe_admin_burst(base, work):
    attacker = Client(base)
    statuses = [
        attacker.post_form("/admin/login/", {"username": "admin", "password": f"wrong{i}"})[0] for i in range(30)
    ]
    return {"outcome": f"30 wrong: { {s: statuses.count(s) for s in sorted(set(statuses))} }"}


def probe_headers(base, work):
    client = member(base)
    _, headers, _ = client.request("GET", "/recordings/")
    lower = {k.lower(): v for k, v in headers.items()}
    csp = lower.get("content-security-policy", "")
    return {"outcome": f"CSP: {csp[:60] + '…' if csp else 'none'}"}


def probe_healthz(base, work):
    client = Client(base)
    started = time.monotonic()
    statuses = [client.request("GET", "/healthz")[0] for _ in range(20)]
    elapsed = (time.monotonic() - started) / 20
    status, _, body = client.request("GET", "/healthz")
    return {
        "outcome": f"anonymous /healthz {status}: {body[:70].decode(errors='replace')}",
        "seconds": elapsed,
        "statuses": statuses,
    }


def probe_playlist(base, work):
    """A playlist naming a local listener: does the server connect to it, and what does the user see?"""
    hits = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]

    def accept():
        listener.settimeout(0.5)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            hits.append(conn.recv(200))
            conn.sendall(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            conn.close()

    stop = threading.Event()
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    playlist = f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://127.0.0.1:{port}/secret-admin-page.ts\n#EXT-X-ENDLIST\n".encode()
    client = member(base)
    answers = []
    started = time.monotonic()
    for path, fields in (("/api/recordings", {}), ("/v1/audio/transcriptions", {"model": "whisper-1"})):
        status, _, body = _post_with(client, path, fields, playlist, {"Authorization": f"Bearer {client.token}"})
        answers.append((path, status, body.decode(errors="replace")))
    elapsed = (time.monotonic() - started) / 2
    time.sleep(2)
    stop.set()
    thread.join()
    listener.close()
    echoed = any("404" in body or "Not Found" in body for _, _, body in answers)
    statuses = ", ".join(f"{path} {status}" for path, status, _ in answers)
    return {
        "outcome": f"{statuses}; listener saw {len(hits)} request(s); remote answer echoed: {'yes' if echoed else 'no'}",
        "seconds": elapsed,
    }


def _post_with(client: Client, path: str, fields: dict, content: bytes, headers: dict):
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="list.m3u8"\r\n'.encode()
        + b"Content-Type: application/octet-stream\r\n\r\n"
        + content
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    headers = {**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    return client.request("POST", path, b"".join(parts), headers, timeout=120)


def probe_content_type(base, work):
    client = member(base)
    mp3 = work / "probe.mp3"
    wav = work / "probe.wav"
    speech("Hello there.", wav)
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"from tests.factories import convert; from pathlib import Path; convert(Path('{wav}'), Path('{mp3}'))",
        ],
        check=True,
        cwd=ROOT,
    )
    status, headers, _ = client.post_form("/recordings/upload", {"title": "x"}, {"audio": ("x.html", mp3.read_bytes())})
    pk = uploaded_pk(client)
    if not pk:
        return {"outcome": f"upload refused ({status})"}
    _, audio_headers, _ = client.request("GET", f"/recordings/{pk}/audio")
    lower = {k.lower(): v for k, v in audio_headers.items()}
    return {
        "outcome": f"an MP3 named x.html served as {lower.get('content-type')}, nosniff: {lower.get('x-content-type-options', 'none')}"
    }


def probe_cursor(base, work):
    client = member(base)
    results = []
    # The shapes a cursor had (base64 of [score, uid, seen]) with values no page ever gave out.
    forged = [[1.0, "x", 10**30], [1e308, "x" * 10_000, -5], "not-a-cursor"]
    for value in forged:
        cursor = value if isinstance(value, str) else base64.urlsafe_b64encode(json.dumps(value).encode()).decode()
        status, _, _ = client.request("GET", "/api/search?" + urlencode({"q": "hello", "cursor": cursor}))
        results.append(status)
    return {"outcome": f"forged cursors → {results}"}


def probe_alias_bomb(base, work):
    """A "billion laughs" Rivet project: nine levels of aliases, each nine of the one before."""
    lines = ['x0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"x{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    bomb = (
        "\n".join(
            [
                "version: 4",
                "data:",
                "  attachedData:",
                *("    " + line for line in lines),
                "  graphs:",
                "    g:",
                "      metadata: {id: g, name: bomb}",
                "      nodes:",
                "        '[n1]:text \"T\"':",
                "          data: {text: *a8}",
                "          visualData: 1/1/1/1//",
            ]
        ).encode()
        + b"\n"
    )
    client = member(base)
    with PeakRise(web_pids()) as peak:
        started = time.monotonic()
        status, _, body = client.post_form(
            "/workflows/import", {"name": "bomb"}, {"project": ("bomb.rivet-project", bomb)}
        )
        elapsed = time.monotonic() - started
    return {"outcome": f"{len(bomb)}-byte alias bomb → HTTP {status}", "seconds": elapsed, "rise_mb": peak.rise / MIB}


def probe_flood(base, work, seconds: float = 8.0):
    """One user sends 64 KiB binary frames as fast as the socket takes them."""
    from websockets.sync.client import connect

    client = member(base)
    parsed = urlparse(base)
    url = f"ws://{parsed.netloc}/ws/live/"
    headers = {"Cookie": f"sessionid={client.cookie('sessionid')}", "Origin": base}
    frame = os.urandom(64 * 1024)
    sent, close = 0, None
    with PeakRise(web_pids()) as peak:
        started = time.monotonic()
        with connect(url, additional_headers=headers, max_size=None, open_timeout=30, close_timeout=60) as ws:
            ws.send(json.dumps({"type": "start", "language": "en"}))
            json.loads(ws.recv(timeout=30))
            try:
                while time.monotonic() - started < seconds:
                    ws.send(frame)
                    sent += len(frame)
                ws.send(json.dumps({"type": "stop"}))
                while True:
                    message = json.loads(ws.recv(timeout=600))
                    if message.get("type") in ("saved", "error"):
                        close = message.get("type") + ":" + str(message.get("code") or message.get("recording") or "")
                        break
            except Exception as exc:  # the server closed the socket on us: that is the answer
                close = (
                    f"closed {getattr(ws, 'close_code', None)} {getattr(ws, 'close_reason', '') or type(exc).__name__}"
                )
        elapsed = time.monotonic() - started
    audio_hours = sent / 2 / 16000 / 3600
    return {
        "outcome": f"sent {sent / MIB:.0f} MiB (= {audio_hours:.1f} h of audio) in {seconds:.0f} s; {close}",
        "seconds": elapsed,
        "rise_mb": peak.rise / MIB,
    }


def probe_stranded(base, work, wait: float = 300.0):
    """Kill the worker's child mid-transcription; how long until the recording is done (or failed)?"""
    client = member(base)
    text = " ".join(["The quick brown fox jumps over the lazy dog while the band plays on."] * 40)
    audio = speech(text, work / "long.wav")
    status, headers, _ = client.post_form("/recordings/upload", {"title": "long"}, {"audio": ("long.wav", audio)})
    pk = uploaded_pk(client)
    if not pk:
        return {"outcome": f"upload refused ({status})"}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and recording_state(client, pk).get("status") != "processing":
        time.sleep(0.2)
    # The pool child running the job is the busy one (the worker's other children, beat included, idle).
    parents = set(worker_pids())
    children = [pid for pid in parents if _ppid(pid) in parents]
    if not children:
        return {"outcome": "no worker child found"}
    before = {pid: _cpu_ticks(pid) for pid in children}
    time.sleep(1.0)
    busiest = max(children, key=lambda pid: _cpu_ticks(pid) - before[pid])
    os.kill(busiest, signal.SIGKILL)
    killed = time.monotonic()
    state = {}
    while time.monotonic() - killed < wait:
        state = recording_state(client, pk)
        if state.get("status") in ("done", "failed"):
            break
        time.sleep(1)
    return {
        "outcome": f"worker child killed mid-job → {state.get('status')} after {time.monotonic() - killed:.0f} s"
        + (f" ({state.get('error')})" if state.get("error") else ""),
        "seconds": time.monotonic() - killed,
    }


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


PROBES = {
    "headers": probe_headers,
    "healthz": probe_healthz,
    "playlist": probe_playlist,
    "content-type": probe_content_type,
    "cursor": probe_cursor,
    "alias-bomb": probe_alias_bomb,
    "flood": probe_flood,
    "stranded": probe_stranded,
    # Last: these use up the address's sign-up and sign-in allowance.
    "weak-password": probe_weak_password,
    "login-burst": probe_login_burst,
    "admin-burst": probe_admin_burst,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--only", nargs="*", choices=sorted(PROBES), default=None)
    parser.add_argument("--skip", nargs="*", choices=sorted(PROBES), default=[])
    parser.add_argument("--flood-seconds", type=float, default=8.0, help="how long the live flood sends")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    work = ROOT / "var" / "bench" / "probes"
    work.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name in args.only or PROBES:
        if name in args.skip:
            continue
        try:
            row = probe_flood(args.url, work, args.flood_seconds) if name == "flood" else PROBES[name](args.url, work)
        except Exception as exc:  # a probe that breaks is a figure too
            row = {"outcome": f"probe error: {type(exc).__name__}: {exc}"[:200]}
        rows[name] = row
        extra = "".join(
            [
                f"  {row['seconds']:.2f} s" if "seconds" in row else "",
                f"  +{row['rise_mb']:.0f} MB" if "rise_mb" in row else "",
            ]
        )
        print(f"{name:14} {row['outcome']}{extra}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
