"""500 JetbaseVersionTriggers in one asyncio loop against a real PostgreSQL database.

    .venv/bin/python benchmarks/bench_trigger.py --triggers 500 --land-after 5

The parent creates a fresh PostgreSQL database holding version 1, then starts a child process
(given the connection as `AIRFLOW_CONN_<ID>` in its environment, as the triggerer would have it)
that runs N triggers waiting for version 2 plus a ticker task that sleeps 10 ms at a time and
records how late it wakes up (event-loop lag). After `--land-after` seconds the parent inserts the
version-2 row. Reported: loop lag max / p99 before and after the version lands (target < 100 ms),
how many triggers fired (target: all) and how long after the insert, and the peak number of
database sessions the triggers held (sampled from pg_stat_activity).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import (
    Table,
    airflow_conn_json,
    check_kinds,
    conn_env_name,
    fresh_db,
    machine_notes,
    percentile,
    write_migrations,
)

CONN_ID = "jetbase_bench_trigger"
TICK = 0.010
CONTROL_SECONDS = 2.0


def make_trigger(target: str, poll_interval: float) -> Any:
    from airflow_provider_jetbase.triggers.jetbase import JetbaseVersionTrigger

    params = inspect.signature(JetbaseVersionTrigger.__init__).parameters
    kwargs: dict[str, Any] = {"jetbase_conn_id": CONN_ID, "target_version": target}
    for name in ("poll_interval", "poke_interval"):
        if name in params:
            kwargs[name] = poll_interval
    return JetbaseVersionTrigger(**kwargs)


async def child_main(count: int, poll_interval: float, deadline: float) -> dict[str, Any]:
    loop_start = time.time()
    lags: list[tuple[float, float]] = []  # (wall time, lag seconds)
    fired: dict[int, float] = {}
    payloads: list[Any] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(TICK)
            lags.append((time.time(), time.perf_counter() - before - TICK))

    async def watch(index: int, trigger: Any) -> None:
        async for event in trigger.run():
            fired[index] = time.time()
            if len(payloads) < 3:
                payloads.append(event.payload)
            return

    # Full (generation 2) garbage collections stop every thread; timed so that a lag spike can be
    # told apart from the triggers' own work.
    gc_pauses: list[tuple[float, float]] = []
    gc_start: list[float] = []

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            gc_start[:] = [time.perf_counter()]
        elif gc_start:
            gc_pauses.append((time.time(), time.perf_counter() - gc_start[0]))

    gc.callbacks.append(on_gc)
    # Control phase: the ticker alone, to see the machine's own scheduling noise side by side.
    tick_task = asyncio.create_task(ticker())
    await asyncio.sleep(CONTROL_SECONDS)
    control_end = time.time()
    triggers = [make_trigger("2", poll_interval) for _ in range(count)]
    tasks = [asyncio.create_task(watch(i, t)) for i, t in enumerate(triggers)]
    print(json.dumps({"ready": time.time()}), flush=True)
    _, pending = await asyncio.wait(tasks, timeout=max(1.0, deadline - time.time()))
    for task in pending:
        task.cancel()
    errors = [repr(t.exception()) for t in tasks if t.done() and not t.cancelled() and t.exception()]
    stop.set()
    await tick_task
    return {
        "start": loop_start,
        "control_end": control_end,
        "lags": lags,
        "fired": list(fired.values()),
        "payloads": payloads,
        "errors": errors[:5],
        "error_count": len(errors),
        "pending": len(pending),
        "gc_pauses": gc_pauses,
    }


def run_child(args: argparse.Namespace) -> int:
    # A triggerer has Airflow and the trigger's module loaded before its loop runs a trigger;
    # importing them inside the loop would measure Airflow's import time, not the trigger.
    import airflow_provider_jetbase.triggers.jetbase  # noqa: F401

    if args.gc_freeze:
        # What a long-running process can do after start-up: move everything loaded so far out of
        # the collector's reach, so full collections walk only what the triggers allocate.
        gc.freeze()
    result = asyncio.run(child_main(args.triggers, args.poll_interval, time.time() + args.timeout))
    print(json.dumps({"result": result}, default=str), flush=True)
    return 0


def pg_sessions(url: Any, database: str, stop: threading.Event, peaks: list[int]) -> None:
    import psycopg2

    conn = psycopg2.connect(host=url.host, port=url.port, user=url.username, dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            while not stop.is_set():
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,))
                peaks.append(cur.fetchone()[0])
                stop.wait(0.25)
    finally:
        conn.close()


def run_parent(args: argparse.Namespace) -> int:
    check_kinds(["postgres"])
    print(machine_notes())
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")
    from lower_bound import raw_upgrade

    with (
        tempfile.TemporaryDirectory(prefix="jetbase_trigger_") as tmp,
        fresh_db("postgres", Path(tmp)) as url,
    ):
        write_migrations(Path(tmp) / "v1", 1, start=1)
        write_migrations(Path(tmp) / "v2", 1, start=2)
        raw_upgrade("postgres", url, str(Path(tmp) / "v1"))
        # The child is the "triggerer": the connection is in its environment, nowhere else.
        env = {
            **os.environ,
            conn_env_name(CONN_ID): airflow_conn_json("postgres", url),
            "AIRFLOW_HOME": tmp,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
        # The child's log goes to a file: an undrained stderr pipe would fill up and block the
        # child's logging calls (the trigger logs from the event loop), faking loop lag.
        log_path = Path(tmp) / "child.log"
        log_file = open(log_path, "w")  # noqa: SIM115 - closed right after the child exits
        proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--child",
                "--triggers",
                str(args.triggers),
                "--poll-interval",
                str(args.poll_interval),
                "--timeout",
                str(args.timeout),
                *(["--gc-freeze"] if args.gc_freeze else []),
            ],
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
            env=env,
            cwd=tmp,
        )
        # Airflow logs to stdout: drain it all the time, or a full pipe would block the child's
        # logging calls (the trigger logs from the event loop) and fake loop lag.
        out_lines: list[str] = []
        reader = threading.Thread(target=lambda: out_lines.extend(proc.stdout or ()), daemon=True)
        reader.start()
        ready = None
        while ready is None:
            ready = next((json.loads(x)["ready"] for x in list(out_lines) if x.startswith('{"ready"')), None)
            if ready is None and proc.poll() is not None:
                reader.join()
                raise SystemExit(f"the trigger child died:\n{log_path.read_text()[-4000:]}{out_lines[-20:]}")
            time.sleep(0.02)
        stop, peaks = threading.Event(), list[int]()
        sampler = threading.Thread(target=pg_sessions, args=(url, url.database, stop, peaks), daemon=True)
        sampler.start()
        time.sleep(args.land_after)
        # A trigger may see the committed row before raw_upgrade has returned (closing its
        # connection on a loaded machine): "early" means before the insert STARTED.
        landed = time.time()
        raw_upgrade("postgres", url, str(Path(tmp) / "v2"))
        insert_seconds = time.time() - landed
        proc.wait(timeout=args.timeout + 60)
        reader.join()
        log_file.close()
        stop.set()
        sampler.join()
        err = log_path.read_text()
        lines = [json.loads(line) for line in out_lines if line.startswith('{"')]
        log_lines = err.count("\n") + len(out_lines) - len(lines)
        result = next((line["result"] for line in lines if "result" in line), None)
        if result is None:
            raise SystemExit(f"no result from the trigger child (exit {proc.returncode}):\n{err[-4000:]}")
        if result["error_count"]:
            print("first errors:", *result["errors"], sep="\n  ")

    control = [lag for at, lag in result["lags"] if at < result["control_end"]]
    before = [lag for at, lag in result["lags"] if result["control_end"] <= at < landed]
    worst_at, worst = max(
        ((at, lag) for at, lag in result["lags"] if at >= result["control_end"]), key=lambda x: x[1]
    )
    after = [lag for at, lag in result["lags"] if at >= landed]
    started = result["control_end"]
    spikes = [(at, lag) for at, lag in result["lags"] if at >= started and lag > 0.050]
    fired = result["fired"]
    early = [t for t in fired if t < landed]
    delays = sorted(t - landed for t in fired if t >= landed)
    table = Table(
        headers=["measure", "value"],
        rows=[
            ["triggers", str(args.triggers)],
            ["poll interval", f"{args.poll_interval} s"],
            ["start-up (process start to all triggers created)", f"{ready - result['start']:.2f} s"],
            [
                "loop lag, ticker alone (control: machine noise): max / p99",
                f"{max(control) * 1000:.1f} / {percentile(control, 99) * 1000:.1f} ms" if control else "n/a",
            ],
            [
                "loop lag before the version lands: max / p99",
                f"{max(before) * 1000:.1f} / {percentile(before, 99) * 1000:.1f} ms" if before else "n/a",
            ],
            [
                "loop lag after the version lands: max / p99",
                f"{max(after) * 1000:.1f} / {percentile(after, 99) * 1000:.1f} ms" if after else "n/a",
            ],
            ["worst lag with triggers: when (s after the insert)", f"{worst_at - landed:+.2f} s"],
            [
                "lag spikes > 50 ms with triggers: count (s after the triggers started)",
                f"{len(spikes)} ({', '.join(f'{at - started:.2f}' for at, _ in spikes[:8])})",
            ],
            [
                "full GC pauses with triggers: count, max (s after the triggers started)",
                ", ".join(
                    f"{pause * 1000:.0f} ms at {at - started:.2f}"
                    for at, pause in result["gc_pauses"]
                    if at >= started
                )
                or "none",
            ],
            ["fired after the insert", f"{len(delays)} / {args.triggers}"],
            ["fired BEFORE the insert started (wrong)", str(len(early))],
            ["insert duration (raw driver, parent process)", f"{insert_seconds:.2f} s"],
            [
                "insert -> first / median / last fire",
                f"{delays[0]:.2f} / {delays[len(delays) // 2]:.2f} / {delays[-1]:.2f} s" if delays else "n/a",
            ],
            ["errors in triggers", str(result["error_count"])],
            ["log lines written by the child", str(log_lines)],
            ["peak PostgreSQL sessions on the database", str(max(peaks) if peaks else "n/a")],
        ],
    )
    print(table.render_markdown())
    ok = worst < 0.100 and len(delays) == args.triggers and not early
    print(
        f"\ntargets (loop lag < 100 ms, all {args.triggers} fire after the insert): "
        f"{'met' if ok else 'MISSED'}"
    )
    if result["errors"]:
        print("first errors:", *result["errors"], sep="\n  ")
    print("sample event payloads:", result["payloads"][:2])
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--triggers", type=int, default=500)
    parser.add_argument("--poll-interval", type=float, default=2.0, help="the triggers' poll interval")
    parser.add_argument("--land-after", type=float, default=5.0, help="seconds before version 2 is inserted")
    parser.add_argument("--timeout", type=float, default=60.0, help="child gives up waiting after this")
    parser.add_argument(
        "--gc-freeze", action="store_true", help="child calls gc.freeze() after its imports (see docs)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return run_child(args) if args.child else run_parent(args)


if __name__ == "__main__":
    sys.exit(main())
