"""Does hash-partitioning the transcript segments by owner speed up a user's queries? Measured at ~10 M rows.

    .venv/bin/python benchmarks/partitioning.py                 # 10 M segments: build (once, kept) + queries
    .venv/bin/python benchmarks/partitioning.py --rows 1000000  # a smaller run
    .venv/bin/python benchmarks/partitioning.py --rebuild       # build the data again even if it is there

Two copies of a segments table shaped like the app's `transcription_segment`, plus the `owner_id`
that partitioning by owner needs (the app reaches the owner through transcript → recording → owner):
- `plain.segment`: one table; primary key (id), unique (transcript_id, index) as the app has, and
  (owner_id, id) for the per-user queries;
- `part.segment`: the same rows, `PARTITION BY HASH (owner_id)` into --partitions tables, with the same
  indexes on each (a partitioned table's unique keys must contain owner_id: (id, owner_id) and
  (transcript_id, index, owner_id)).

The data (generated in SQL, deterministic): 2,000 users with a Zipf-like number of recordings
(recordings ∝ rank^-0.6: the heaviest has ~1,600, the last ~17), 50–200 segments a recording, recordings
of all users interleaved in time as they would arrive, 8–24 words of meeting English a segment (word
frequencies skewed like speech), a word-timings JSON on one recording in ten. Both copies are built at
once on two connections and kept in var/bench/partitioning/, so a second run only measures.

Then, for the heaviest user and a tail user, the queries a user's pages run, each variant the same
parameters in the same round, the two in random order each round (p50/p95 of many rounds; warm cache,
as for an active user): a recording's segments (by transcript_id, and by transcript_id + owner_id, which
lets PostgreSQL prune to one partition), the user's 50 newest segments, the user's segment count, a
search page (`ILIKE '%word%'` within the user's segments, newest 20, a common and a rare word), deleting
the user's segments (rolled back), and inserting one recording's 125 segments (one multi-row INSERT and
commit, like Django's bulk_create). Queries go through psycopg's client-side binding, as Django sends
them, so each is planned when it runs. `EXPLAIN (ANALYZE, BUFFERS)` of the heavy user's queries is
written to var/bench/partitioning/explain.txt (summarised on screen). Table and index sizes at the end.

Its own PostgreSQL (Debian's 15, `assistant_site.local_postgres`, no fsync, autovacuum and JIT off so
neither adds noise; 512 MB shared buffers), on a free port, stopped at the end and on Ctrl-C.
"""

import argparse
import contextlib
import random
import re
import shutil
import signal
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assistant_site.local_postgres import HOST, SUPERUSER, LocalPostgres  # noqa: E402

DATA_DIR = ROOT / "var" / "bench" / "partitioning"
DATABASE = "partitioning"
USERS = 2000
ZIPF_EXPONENT = 0.6
MEAN_SEGMENTS = 125  # 50–200, uniform
VARIANTS = ("plain", "part")
RARE_WORD = "zanzibar"  # in about one segment in 4,000


class BenchPostgres(LocalPostgres):
    """The bundled server with settings for a bulk build and steady timings."""

    EXTRA = {
        "shared_buffers": "512MB",
        "maintenance_work_mem": "512MB",
        "max_wal_size": "8GB",
        "checkpoint_timeout": "30min",
        "autovacuum": "off",  # VACUUM ANALYZE runs explicitly after the build
        "jit": "off",  # JIT compiles the bigger scans now and then: noise, not a property of either layout
        "max_parallel_maintenance_workers": "1",  # two builds run at once on 2 cores
    }

    def server_options(self) -> str:
        return super().server_options() + "".join(f" -c {name}={value}" for name, value in self.EXTRA.items())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def connect(port: int, **kwargs) -> psycopg.Connection:
    # ClientCursor: parameters are bound client-side, as Django's psycopg backend does by default.
    return psycopg.connect(
        host=HOST, port=port, user=SUPERUSER, dbname=DATABASE, cursor_factory=psycopg.ClientCursor, **kwargs
    )


def vocabulary() -> list[str]:
    """The words of the reference meeting text, most frequent first (the generator favours the first)."""
    words = re.findall(r"[a-z']+", (ROOT / "benchmarks" / "reference.txt").read_text().lower())
    counts: dict[str, int] = {}
    for word in words:
        counts[word] = counts.get(word, 0) + 1
    return sorted(counts, key=lambda w: (-counts[w], w))


def recordings_per_user(rows: int) -> list[int]:
    total = rows / MEAN_SEGMENTS
    weights = [rank**-ZIPF_EXPONENT for rank in range(1, USERS + 1)]
    scale = total / sum(weights)
    return [max(1, round(w * scale)) for w in weights]


# ---------------------------------------------------------------------------------------------- build

# u(k): a uniform number in [0, 1) from the segment id and a slot; cubed, it favours the first words.
WORD = "v[1 + floor(cardinality(v) * power((hashint8extended(s.sid, {k}) & 2147483647)::float8 / 2147483648, 3))::int]"
SEGMENT_SELECT = f"""
SELECT s.sid, s.owner_id, s.rid, s.i,
       s.i * 6.0 + (s.sid %% 7) / 10.0,
       s.i * 6.0 + 2 + (s.sid %% 37) / 10.0,
       array_to_string((ARRAY[{", ".join(WORD.format(k=k) for k in range(24))}])[1:8 + s.sid %% 17], ' ')
         || CASE WHEN hashint8extended(s.sid, 99) %% 4000 = 0 THEN ' {RARE_WORD.capitalize()}' ELSE '' END,
       CASE WHEN s.rid %% 5 = 0 THEN 'SPEAKER_0' || (s.sid %% 3) ELSE '' END,
       -0.1 - (s.sid %% 50) / 100.0, (s.sid %% 100) / 1000.0, 1.2 + (s.sid %% 80) / 100.0,
       CASE WHEN s.rid %% 10 = 0
            THEN ('[' || repeat('[' || s.i * 6.0 || ', ' || (s.i * 6.0 + 0.4) || ', " word", 0.93], ', 14)
                  || '[0.0, 0.4, " end", 0.9]]')::jsonb END
FROM (SELECT r.first_segment_id + g.i AS sid, r.owner_id, r.id AS rid, g.i
      FROM bench.recording r CROSS JOIN LATERAL generate_series(0, r.n_segments - 1) AS g(i)
      WHERE r.id BETWEEN %(lo)s AND %(hi)s) s,
     (SELECT %(vocabulary)s::text[] AS v) vocabulary
"""
COLUMNS = 'id, owner_id, transcript_id, index, start, "end", text, speaker, avg_logprob, no_speech_prob, compression_ratio, words'
TABLE = """
CREATE TABLE {schema}.segment (
    id bigint NOT NULL DEFAULT nextval('bench.segment_id'),
    owner_id bigint NOT NULL,
    transcript_id bigint NOT NULL,
    index integer NOT NULL CHECK (index >= 0),
    start double precision NOT NULL,
    "end" double precision NOT NULL,
    text text NOT NULL,
    speaker varchar(100) NOT NULL,
    avg_logprob double precision,
    no_speech_prob double precision,
    compression_ratio double precision,
    words jsonb
)"""
INDEXES = {
    "plain": [
        "ALTER TABLE plain.segment ADD PRIMARY KEY (id)",
        "ALTER TABLE plain.segment ADD CONSTRAINT segment_order_unique UNIQUE (transcript_id, index)",
        "CREATE INDEX segment_owner_id ON plain.segment (owner_id, id)",
        "ALTER TABLE plain.segment ADD FOREIGN KEY (transcript_id) REFERENCES bench.transcript (id)",
    ],
    "part": [
        "ALTER TABLE part.segment ADD PRIMARY KEY (id, owner_id)",
        "ALTER TABLE part.segment ADD CONSTRAINT segment_order_unique UNIQUE (transcript_id, index, owner_id)",
        "CREATE INDEX segment_owner_id ON part.segment (owner_id, id)",
        "ALTER TABLE part.segment ADD FOREIGN KEY (transcript_id) REFERENCES bench.transcript (id)",
    ],
}


def built_rows(port: int, target_rows: int, partitions: int) -> int | None:
    """The segments built earlier for the same --rows and --partitions, if any."""
    with connect(port, autocommit=True) as conn:
        if not conn.execute("SELECT to_regclass('bench.meta')").fetchone()[0]:
            return None
        row = conn.execute("SELECT target_rows, partitions, segments FROM bench.meta WHERE complete").fetchone()
    return row[2] if row and row[0] == target_rows and row[1] == partitions else None


def build(port: int, target_rows: int, partitions: int) -> dict[str, float]:
    """Both copies from scratch; returns seconds per phase."""
    phases: dict[str, float] = {}
    started = time.perf_counter()
    counts = recordings_per_user(target_rows)
    with connect(port, autocommit=True) as conn:
        for schema in ("plain", "part", "bench"):
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute("CREATE TABLE bench.meta (target_rows bigint, partitions int, segments bigint, complete bool)")
        conn.execute("CREATE TABLE bench.owner (id bigint PRIMARY KEY, n_recordings int)")
        with conn.cursor().copy("COPY bench.owner FROM STDIN") as copy:
            for rank, n in enumerate(counts, start=1):
                copy.write_row((rank, n))
        # Recordings of every user interleaved as they would arrive: ids in a random (but fixed) order.
        conn.execute(
            """CREATE TABLE bench.recording AS
               SELECT id, owner_id, n_segments,
                      (sum(n_segments) OVER (ORDER BY id) - n_segments + 1)::bigint AS first_segment_id,
                      timestamptz '2026-01-01' + id * interval '1 minute' AS created_at
               FROM (SELECT row_number() OVER (ORDER BY hashint8extended(o.id * 100000 + g, 7)) AS id,
                            o.id AS owner_id, 50 + (hashint8extended(o.id * 100000 + g, 8) & 1023) % 151 AS n_segments
                     FROM bench.owner o CROSS JOIN LATERAL generate_series(1, o.n_recordings) AS g) r
               ORDER BY id"""
        )
        conn.execute("ALTER TABLE bench.recording ADD PRIMARY KEY (id)")
        conn.execute("CREATE INDEX ON bench.recording (owner_id, created_at)")
        # One transcript per recording, with the recording's id.
        conn.execute("CREATE TABLE bench.transcript AS SELECT id, id AS recording_id FROM bench.recording")
        conn.execute("ALTER TABLE bench.transcript ADD PRIMARY KEY (id)")
        recordings, segments = conn.execute("SELECT count(*), sum(n_segments) FROM bench.recording").fetchone()
        conn.execute(f"CREATE SEQUENCE bench.segment_id START {segments + 1}")
        conn.execute(TABLE.format(schema="plain"))
        conn.execute(TABLE.format(schema="part") + " PARTITION BY HASH (owner_id)")
        for i in range(partitions):
            conn.execute(
                f"CREATE TABLE part.segment_{i:02d} PARTITION OF part.segment FOR VALUES WITH (MODULUS {partitions}, REMAINDER {i})"
            )
    phases["recordings"] = time.perf_counter() - started
    print(f"  {USERS} users, {recordings:,} recordings, {segments:,} segments (heaviest user {counts[0]} recordings)")

    chunks = 10
    bounds = [(recordings * c // chunks + 1, recordings * (c + 1) // chunks) for c in range(chunks)]
    words = vocabulary()
    errors: list[BaseException] = []

    def fill(schema: str) -> None:
        try:
            with connect(port, autocommit=True) as conn:
                conn.execute("SET max_parallel_workers_per_gather = 0")
                t0 = time.perf_counter()
                for c, (lo, hi) in enumerate(bounds, start=1):
                    conn.execute(
                        f"INSERT INTO {schema}.segment ({COLUMNS}) {SEGMENT_SELECT}",
                        {"lo": lo, "hi": hi, "vocabulary": words},
                    )
                    print(
                        f"  {schema}: {c * 100 // chunks:3d} % of the rows, {time.perf_counter() - t0:5.0f} s",
                        flush=True,
                    )
                phases[f"{schema} rows"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                for statement in INDEXES[schema]:
                    conn.execute(statement)
                phases[f"{schema} indexes"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                conn.execute(f"VACUUM (ANALYZE) {schema}.segment")
                phases[f"{schema} vacuum"] = time.perf_counter() - t0
                print(
                    f"  {schema}: indexed and vacuumed, {time.perf_counter() - started:5.0f} s since the start",
                    flush=True,
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=fill, args=(schema,), daemon=True) for schema in VARIANTS]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)  # wakes up for Ctrl-C
    if errors:
        raise errors[0]
    with connect(port, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) bench.recording, bench.transcript")
        conn.execute("INSERT INTO bench.meta VALUES (%s, %s, %s, true)", [target_rows, partitions, segments])
    phases["total"] = time.perf_counter() - started
    return phases


# ---------------------------------------------------------------------------------------------- measure

READ_COLUMNS = 'id, index, start, "end", text, speaker, words'
QUERIES = {
    "recording's segments (transcript_id)": (
        f"SELECT {READ_COLUMNS} FROM {{t}} WHERE transcript_id = %(transcript)s ORDER BY index"
    ),
    "recording's segments (+ owner_id)": (
        f"SELECT {READ_COLUMNS} FROM {{t}} WHERE transcript_id = %(transcript)s AND owner_id = %(owner)s ORDER BY index"
    ),
    "50 newest segments": f"SELECT {READ_COLUMNS} FROM {{t}} WHERE owner_id = %(owner)s ORDER BY id DESC LIMIT 50",
    "segment count": "SELECT count(*) FROM {t} WHERE owner_id = %(owner)s",
    "search a common word (page of 20)": (
        "SELECT id, transcript_id, start, text FROM {t} WHERE owner_id = %(owner)s AND text ILIKE %(common)s"
        " ORDER BY id DESC LIMIT 20"
    ),
    "search a rare word (page of 20)": (
        "SELECT id, transcript_id, start, text FROM {t} WHERE owner_id = %(owner)s AND text ILIKE %(rare)s"
        " ORDER BY id DESC LIMIT 20"
    ),
    "delete the user's segments": "DELETE FROM {t} WHERE owner_id = %(owner)s",
}
ROUNDS = {"delete the user's segments": (4, 12)}  # (heavy, tail) rounds where the default is too slow
DEFAULT_ROUNDS = 31
INSERT_ROWS = 125


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def timed(conn: psycopg.Connection, statement: str, params: dict, *, rollback: bool = False) -> float:
    with conn.cursor() as cur:
        t0 = time.perf_counter()
        cur.execute(statement, params)
        if cur.description:
            cur.fetchall()
        elapsed = time.perf_counter() - t0
    if rollback:
        conn.rollback()
    else:
        conn.commit()
    return elapsed * 1000


def insert_statement(schema: str, owner: int, transcript: int) -> tuple[str, dict]:
    rng = random.Random(transcript)
    words = vocabulary()
    rows, params = [], {}
    for i in range(INSERT_ROWS):
        text = " ".join(rng.choice(words[:150]) for _ in range(rng.randint(8, 24)))
        rows.append(f"(%(o)s, %(t)s, {i}, {i * 6.0}, {i * 6.0 + 4.5}, %(x{i})s, '', -0.3, 0.01, 1.5, NULL)")
        params[f"x{i}"] = text
    params |= {"o": owner, "t": transcript}
    columns = 'owner_id, transcript_id, index, start, "end", text, speaker, avg_logprob, no_speech_prob, compression_ratio, words'
    return f"INSERT INTO {schema}.segment ({columns}) VALUES {', '.join(rows)} RETURNING id", params


def measure(port: int, rounds: int) -> tuple[dict, list[str]]:
    """{(user, query): {variant: [ms, …]}} and the EXPLAIN summaries."""
    rng = random.Random(12)
    results: dict[tuple[str, str], dict[str, list[float]]] = {}
    explains: list[str] = []
    with connect(port) as conn:
        heavy, tail = conn.execute("SELECT min(id), max(id) FROM bench.owner").fetchone()
        users = {"heavy": heavy, "tail": tail}
        transcripts = {
            name: [r[0] for r in conn.execute("SELECT id FROM bench.recording WHERE owner_id = %s", [owner])]
            for name, owner in users.items()
        }
        segments = {
            name: conn.execute("SELECT count(*) FROM plain.segment WHERE owner_id = %s", [owner]).fetchone()[0]
            for name, owner in users.items()
        }
        conn.commit()
        common = vocabulary()[0]
        for name in users:
            print(f"  {name} user {users[name]}: {len(transcripts[name]):,} recordings, {segments[name]:,} segments")
        print(f"  search words: {common!r} (the commonest), {RARE_WORD!r} (about 1 segment in 4,000)")

        def params_for(name: str) -> dict:
            return {
                "owner": users[name],
                "transcript": rng.choice(transcripts[name]),
                "common": f"%{common}%",
                "rare": f"%{RARE_WORD}%",
            }

        for query, template in QUERIES.items():
            is_delete = template.startswith("DELETE")
            for name in users:
                n = ROUNDS.get(query, (rounds, rounds))[name == "tail"]
                times: dict[str, list[float]] = {v: [] for v in VARIANTS}
                for r in range(n + 2):  # two rounds of warm-up
                    params = params_for(name)
                    for variant in rng.sample(VARIANTS, 2):
                        ms = timed(conn, template.format(t=f"{variant}.segment"), params, rollback=is_delete)
                        if r >= 2:
                            times[variant].append(ms)
                results[(name, query)] = times
                if name == "heavy":
                    params = params_for(name)  # the same recording for both
                    for variant in VARIANTS:
                        explains.append(explain(conn, query, variant, template, params))

        # One recording's segments, inserted and committed (then removed, untimed).
        next_id = conn.execute("SELECT max(id) FROM bench.recording").fetchone()[0] + 1
        for name in users:
            times = {v: [] for v in VARIANTS}
            for r in range(rounds + 2):
                transcript = next_id
                next_id += 1
                conn.execute(
                    "INSERT INTO bench.recording (id, owner_id, n_segments, first_segment_id, created_at)"
                    " VALUES (%s, %s, %s, 0, now())",
                    [transcript, users[name], INSERT_ROWS],
                )
                conn.execute("INSERT INTO bench.transcript VALUES (%s, %s)", [transcript, transcript])
                conn.commit()
                for variant in rng.sample(VARIANTS, 2):
                    statement, params = insert_statement(variant, users[name], transcript)
                    ms = timed(conn, statement, params)
                    if r >= 2:
                        times[variant].append(ms)
            results[(name, f"insert a recording ({INSERT_ROWS} segments)")] = times
        cleanup(conn)
    return results, explains


def cleanup(conn: psycopg.Connection) -> None:
    """Remove what the insert measurement added (also after an interrupted run)."""
    segments = conn.execute("SELECT segments FROM bench.meta").fetchone()[0]
    for variant in VARIANTS:
        conn.execute(f"DELETE FROM {variant}.segment WHERE id > %s", [segments])
    conn.execute("DELETE FROM bench.transcript WHERE id IN (SELECT id FROM bench.recording WHERE first_segment_id = 0)")
    conn.execute("DELETE FROM bench.recording WHERE first_segment_id = 0")
    conn.commit()


def explain(conn: psycopg.Connection, query: str, variant: str, template: str, params: dict) -> str:
    statement = "EXPLAIN (ANALYZE, BUFFERS) " + template.format(t=f"{variant}.segment")
    lines = [row[0] for row in conn.execute(statement, params)]
    conn.rollback()  # the DELETE's
    scans = sum(
        1 for line in lines if re.search(r"Seq Scan on|Index (Only )?Scan (Backward )?using|Bitmap Heap Scan on", line)
    )
    buffers = next((line.strip() for line in lines if line.strip().startswith("Buffers:")), "")
    planning = next((line.strip() for line in lines if line.startswith("Planning Time")), "")
    execution = next((line.strip() for line in lines if line.startswith("Execution Time")), "")
    header = f"--- {variant}: {query} (heavy user)"
    with (DATA_DIR / "explain.txt").open("a") as out:
        out.write(header + "\n" + "\n".join(lines) + "\n\n")
    return f"  {variant:5} {query[:36]:36} {scans:2d} scans  {planning:24} {execution:26} {buffers}"


# ---------------------------------------------------------------------------------------------- report


def sizes(port: int) -> list[str]:
    """Heap (with TOAST) and each index, summed over the partitions."""

    def size(conn: psycopg.Connection, relation: str, function: str) -> tuple[int, int]:
        leaves = [r[0] for r in conn.execute("SELECT relid FROM pg_partition_tree(%s) WHERE isleaf", [relation])]
        leaves = leaves or [relation]
        total = sum(conn.execute(f"SELECT {function}(%s::regclass)", [leaf]).fetchone()[0] for leaf in leaves)
        return total, len(leaves)

    out = []
    with connect(port, autocommit=True) as conn:
        for variant in VARIANTS:
            table, n = size(conn, f"{variant}.segment", "pg_table_size")
            parts = [f"table {table / 2**30:.2f} GiB" + (f" in {n} partitions" if n > 1 else "")]
            indexes = conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = 'segment' ORDER BY 1", [variant]
            ).fetchall()
            parts += [
                f"{index} {size(conn, f'{variant}.{index}', 'pg_relation_size')[0] / 2**20:,.0f} MiB"
                for (index,) in indexes
            ]
            out.append(f"  {variant:5} " + ", ".join(parts))
            if n > 1:
                spread = conn.execute(
                    "SELECT min(reltuples)::bigint, max(reltuples)::bigint FROM pg_class c"
                    " JOIN pg_partition_tree(%s) p ON p.relid = c.oid WHERE p.isleaf",
                    [f"{variant}.segment"],
                ).fetchone()
                out.append(f"        rows per partition {spread[0]:,} – {spread[1]:,}")
    return out


def report(results: dict, explains: list[str]) -> None:
    print(
        f"\n{'user':6} {'query':42} {'plain p50':>9} {'p95':>8} {'part p50':>9} {'p95':>8} {'part/plain':>10} {'n':>4}"
    )
    for (name, query), times in results.items():
        plain, part = times["plain"], times["part"]
        p50s = statistics.median(plain), statistics.median(part)
        print(
            f"{name:6} {query:42} {p50s[0]:9.2f} {percentile(plain, 0.95):8.2f} {p50s[1]:9.2f}"
            f" {percentile(part, 0.95):8.2f} {p50s[1] / p50s[0]:9.2f}× {len(plain):4d}"
        )
    print("\nEXPLAIN (ANALYZE, BUFFERS), heavy user (full plans in var/bench/partitioning/explain.txt):")
    print("\n".join(explains))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="segments to generate (default 10 M)")
    parser.add_argument("--partitions", type=int, default=32, help="hash partitions of the partitioned copy")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="timed rounds per query and user")
    parser.add_argument("--rebuild", action="store_true", help="build the data again even if it is there")
    parser.add_argument("--port", type=int, default=0, help="PostgreSQL port (default: a free one)")
    parser.add_argument("--drop", action="store_true", help="delete the data directory at the end")
    args = parser.parse_args()

    server = BenchPostgres(DATA_DIR / "pgdata", args.port or free_port(), durable=False)
    if server.server_pid():  # left running by an interrupted run, perhaps on another port
        server.stop()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    started = time.perf_counter()
    try:
        server.start()
        print(f"PostgreSQL on {HOST}:{server.port}, data in {server.data_dir}")
        with psycopg.connect(host=HOST, port=server.port, user=SUPERUSER, dbname="postgres", autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
                conn.execute(f"CREATE DATABASE {DATABASE}")
        rows = None if args.rebuild else built_rows(server.port, args.rows, args.partitions)
        if rows is not None:
            print(f"reusing the {rows:,} segments built earlier (--rebuild to build them again)")
            with connect(server.port) as conn:
                cleanup(conn)
            with connect(server.port, autocommit=True) as conn:
                # The last run's deletes (rolled back) and inserts left pages not all-visible: index-only
                # scans would visit the heap. VACUUM puts the tables back as the build left them.
                conn.execute("VACUUM (ANALYZE) plain.segment, part.segment")
        else:
            print(f"building ~{args.rows:,} segments twice (plain, {args.partitions} hash partitions) …")
            phases = build(server.port, args.rows, args.partitions)
            print("  build, seconds: " + ", ".join(f"{name} {s:.0f}" for name, s in phases.items()))
        (DATA_DIR / "explain.txt").unlink(missing_ok=True)
        print(f"measuring ({args.rounds} rounds per query and user, both variants each round) …")
        results, explains = measure(server.port, args.rounds)
        report(results, explains)
        print("\nsizes:")
        print("\n".join(sizes(server.port)))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
    finally:
        server.stop()
        print(f"PostgreSQL stopped; {time.perf_counter() - started:.0f} s in all")
        if args.drop:
            with contextlib.suppress(OSError):
                shutil.rmtree(server.data_dir)


if __name__ == "__main__":
    main()
