"""A live session's state outside the web process that serves it, so any process can carry it on.

- Its audio is appended to a spool file (LIVE_SPOOL_DIR) as each frame arrives, unbuffered: a
  process that is killed loses nothing it had received, and no process keeps the audio in memory.
- The rest is in Redis: who started it, when and how (a hash), the words committed so far (a list),
  and a lease naming the process that serves it now, renewed every second. A lease that runs out
  means that process is gone; another process may then take the session over, or the worker saves it.
  Whoever saves a session holds its lease until it is saved, so two never save it at once.
- Each user's live seconds per day, counted across processes (LIVE_MINUTES_PER_DAY).
"""

import datetime
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import orjson
import redis
from django.conf import settings
from redis.typing import EncodableT, FieldT

from .streaming import Word

log = logging.getLogger(__name__)
LEASE_SECONDS = 5.0
SESSIONS = "live:sessions"  # every session not yet saved, for the sweep of abandoned ones

_client: redis.Redis | None = None
_process: tuple[int, str] | None = None

# Keep the lease: renew it while it is still ours, take it again if it ran out (Redis was away) and
# nobody else took it meanwhile; never for a session that is gone (saved and deleted).
KEEP = """
if redis.call('exists', KEYS[2]) == 0 then return 0 end
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then redis.call('pexpire', KEYS[1], ARGV[2])
elseif not holder then redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
else return 0 end
redis.call('hset', KEYS[2], 'seen', ARGV[3])
return 1
"""
COUNT_ATTEMPT = (
    "if redis.call('exists', KEYS[1]) == 1 then return redis.call('hincrby', KEYS[1], 'save_attempts', 1) end return 0"
)
RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, decode_responses=True)
    return _client


def this_process() -> str:
    """A name for this process in leases (new after a fork)."""
    global _process
    if _process is None or _process[0] != os.getpid():
        _process = (os.getpid(), f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}")
    return _process[1]


def _user_key(user_id: int) -> str:
    return f"live:user:{user_id}"


class SessionStore:
    def __init__(self, session_id: str):
        self.id = session_id
        self.meta_key = f"live:{session_id}"
        self.words_key = f"live:{session_id}:words"
        self.lease_key = f"live:{session_id}:lease"
        self.wanted_key = f"live:{session_id}:wanted"
        self.spool_path = Path(settings.LIVE_SPOOL_DIR) / f"{session_id}.pcm"

    def create(self, user_id: int, options: dict, policy: str) -> None:
        self.spool_path.parent.mkdir(parents=True, exist_ok=True)
        self.spool_path.touch()
        meta: dict[FieldT, EncodableT] = {
            "user_id": user_id,
            "options": orjson.dumps(options).decode(),
            "policy": policy,
            "seen": time.time(),
            "started": time.time(),
        }
        pipe = client().pipeline()
        pipe.hset(self.meta_key, mapping=meta)
        pipe.sadd(SESSIONS, self.id)
        pipe.sadd(_user_key(user_id), self.id)
        pipe.execute()

    def meta(self) -> dict | None:
        meta = client().hgetall(self.meta_key)
        if not meta:
            return None
        return {
            **meta,
            "user_id": int(meta["user_id"]),
            "options": orjson.loads(meta["options"]),
            "seen": float(meta["seen"]),
            "started": float(meta.get("started", meta["seen"])),
            "save_attempts": int(meta.get("save_attempts", 0)),
        }

    # --- audio ---------------------------------------------------------------------------------
    def open_spool(self):
        return open(self.spool_path, "ab", buffering=0)

    def spooled_bytes(self) -> int:
        try:
            return self.spool_path.stat().st_size // 2 * 2  # whole samples only
        except FileNotFoundError:
            return 0

    def read_pcm(self, from_sample: int = 0, max_samples: int | None = None) -> bytes:
        size = self.spooled_bytes() - from_sample * 2
        if max_samples is not None:
            size = min(size, max_samples * 2)
        with open(self.spool_path, "rb") as spool:
            spool.seek(from_sample * 2)
            return spool.read(max(0, size))

    # --- words ---------------------------------------------------------------------------------
    def add_words(self, words: list[Word]) -> None:
        if words:
            client().rpush(self.words_key, *(orjson.dumps([w.start, w.end, w.word, w.probability]) for w in words))

    def words(self) -> list[Word]:
        return [Word(*orjson.loads(raw)) for raw in client().lrange(self.words_key, 0, -1)]

    # --- who serves it -------------------------------------------------------------------------
    def take_lease(self) -> bool:
        return bool(client().set(self.lease_key, this_process(), nx=True, px=int(LEASE_SECONDS * 1000)))

    def renew_lease(self) -> bool:
        """Keep the lease; take it again if it ran out (Redis was away) and nobody else took it."""
        return bool(
            client().eval(
                KEEP, 2, self.lease_key, self.meta_key, this_process(), int(LEASE_SECONDS * 1000), time.time()
            )
        )

    def release_lease(self) -> None:
        client().eval(RELEASE, 1, self.lease_key, this_process())

    @contextmanager
    def keeping_lease(self) -> Iterator[None]:
        """Renew the lease (from a thread) while the body runs, however long it takes: finishing and
        saving a session may outlast LEASE_SECONDS, and nobody else may take the session over (or
        save it too) meanwhile."""
        done = threading.Event()

        def keep() -> None:
            while not done.wait(1.0):
                try:
                    if not self.renew_lease():
                        log.info("live session %s: lease no longer held (saved, or taken over)", self.id)
                        return
                except redis.RedisError:
                    log.warning("live session %s: could not renew its lease", self.id, exc_info=True)

        keeper = threading.Thread(target=keep, name=f"live-lease-{self.id[:8]}", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            done.set()
            keeper.join()

    def lease_holder(self) -> str | None:
        return cast(str | None, client().get(self.lease_key))

    def ask_for_it(self) -> None:
        """Another process wants to serve this session: its holder hands it over."""
        client().set(self.wanted_key, this_process(), px=int(LEASE_SECONDS * 2000))

    def is_wanted(self) -> bool:
        return bool(client().exists(self.wanted_key))

    def taken(self) -> None:
        """The request to hand the session over was met: the new holder must not hand it on."""
        client().delete(self.wanted_key)

    # --- saving ---------------------------------------------------------------------------------
    def count_save_attempt(self) -> int:
        """One more failed attempt at saving the session (not for one that is gone)."""
        return int(client().eval(COUNT_ATTEMPT, 1, self.meta_key))

    def delete(self, user_id: int) -> None:
        pipe = client().pipeline()
        pipe.delete(self.meta_key, self.words_key, self.lease_key, self.wanted_key)
        pipe.srem(SESSIONS, self.id)
        pipe.srem(_user_key(user_id), self.id)
        pipe.execute()
        self.spool_path.unlink(missing_ok=True)


def _members(key: str) -> set[str]:
    return cast(set[str], client().smembers(key))  # str: the client decodes responses


def _usage_key(user_id: int, day: datetime.date) -> str:
    return f"live:usage:{user_id}:{day.isoformat()}"


def add_live_seconds(user_id: int, seconds: float) -> float:
    """Count live audio against the user's day (UTC); the day's total so far, in seconds."""
    key = _usage_key(user_id, datetime.datetime.now(datetime.UTC).date())
    pipe = client().pipeline()
    pipe.incrbyfloat(key, seconds)
    pipe.expire(key, 2 * 86400)
    return float(pipe.execute()[0])


def live_seconds_today(user_id: int) -> float:
    return float(client().get(_usage_key(user_id, datetime.datetime.now(datetime.UTC).date())) or 0)


def open_sessions(user_id: int) -> int:
    """The user's sessions not yet saved, in any process."""
    ids = _members(_user_key(user_id))
    return sum(1 for session_id in ids if client().exists(SessionStore(session_id).meta_key) > 0)


def discard_user_sessions(user_id: int) -> int:
    """Forget a (deleted) user's unsaved sessions: their Redis state and spooled audio."""
    ids = _members(_user_key(user_id))
    for session_id in ids:
        SessionStore(session_id).delete(user_id)
    return len(ids)


def abandoned_sessions(resume_seconds: float) -> list[str]:
    """Sessions that no process serves (their lease ran out) and nobody resumed in time."""
    now, found = time.time(), []
    for session_id in _members(SESSIONS):
        store = SessionStore(session_id)
        meta = store.meta()
        if meta is None:
            client().srem(SESSIONS, session_id)
        elif store.lease_holder() is None and now - meta["seen"] > resume_seconds:
            found.append(session_id)
    return found
