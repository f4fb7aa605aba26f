"""Gated sends: one-time-credit sends through a real Subgate to a fake Alipay, spend-once checked.

Every user of a fresh copy of a ``credits<k>`` ledger (``bench.ledger_fill``) holds exactly k
one-time credits. Subgate (``run.py``, production settings) calls a fake gateway that runs as a
process of its own (``bench.fake_gateway``: verifies every request signature, signs every
answer). wrk posts ``POST /v1/apps/{app}/messages`` from a third process: per user, k + extra
distinct Idempotency-Keys (so ``extra`` attempts must find no credit) and ``duplicates`` repeats
of keys already used (replays and retries, often while the original is still in flight), all of
one user's attempts close together in the sequence so that they race.

After the run (and once nothing is pending or in flight) the books must balance: platform calls
the fake received == credits spent (k x users - credits left) == messages ``sent`` == spend
events - refunds; no user got more sends than credits; no business key reached the platform
twice; no message has two spend events; every user's credits left == k - the sends they got.
A sample of the users that were sent to reads back through the store: projection == fold.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import postgres_ledger
from bench.intake import APP_ID, ROOT
from bench.ledger_fill import cached_ledger, copy_to, credits_family
from bench.machine import SwitchCount
from bench.postgres_db import fetch_value
from bench.processes import cpu_seconds, free_port, serving, tree_cpu_seconds
from bench.quiet import Foreign
from bench.report import latency_summary, verdict
from bench.sends_books import books as count_books
from bench.sends_books import fold_sample, read_only
from bench.service import (
    ONE_TIME,
    command,
    fake_gateway_command,
    new_token,
    write_config,
    write_keys,
)
from bench.syscalls import PROBE_SECONDS, syscall_probe
from bench.wrk import ScriptResult, run_script

SENDS_TARGET = 1500.0
COUNTERS = ("ok", "accepted", "refused", "other")

LUA = r"""
local users, k, e, d, m, template, headers, path, counter, step
function init(args)
  users = tonumber(args[3]); k = tonumber(args[4]); e = tonumber(args[5])
  d = tonumber(args[6]); template = args[7]; step = tonumber(args[8])
  counter = tonumber(args[9]) + tonumber(tid) - step
  m = k + e + d
  headers = {["Authorization"] = "Bearer " .. args[2], ["Content-Type"] = "application/json"}
  path = "/v1/apps/" .. args[1] .. "/messages"
  ok, accepted, refused, other = 0, 0, 0, 0
end
function request()
  counter = counter + step
  local u = math.floor(counter / m) % users
  local slot = counter % m
  local j = slot
  if slot >= k + e then j = (slot * 7 + u) % (k + e) end
  local key = string.format("send-%d-%d", u, j)
  headers["Idempotency-Key"] = key
  local body = string.format(
    '{"channel":"mini_template","to_user_id":"2088%012d","template_id":"%s",' ..
    '"page":"pages/orders/detail?id=%d","data":{"keyword1":{"value":"订单已发货"},' ..
    '"keyword2":{"value":"2026-11-23 16:00"},"keyword3":{"value":"%s"}}}',
    u, template, u, key)
  return wrk.format("POST", path, headers, body)
end
function response(status, hdrs, body)
  if status == 200 then ok = ok + 1
  elseif status == 202 then accepted = accepted + 1
  elseif status == 403 then refused = refused + 1
  else other = other + 1 end
end
"""


@dataclass(frozen=True)
class SendsPlan:
    name: str
    users: int
    credits: int
    extra: int  # distinct keys per user beyond the credits: each must be refused
    duplicates: int  # repeats of the user's keys: replays, never a second send
    seconds: float
    connections: int
    call_processes: int = 0  # [outbox] call_processes: 0 makes every call in the server process
    syscall_probe: bool = False  # strace the server after the run (bench.syscalls)

    @property
    def attempts_per_user(self) -> int:
        return self.credits + self.extra + self.duplicates


def run(plan: SendsPlan, workdir: Path, postgres: str | None = None) -> dict[str, Any]:
    """``postgres``: the URL of an empty PostgreSQL schema to run on instead of SQLite (the
    ledger is copied in, and the books read from a SQLite copy of what it holds afterwards)."""
    ledger = cached_ledger(credits_family(plan.credits), plan.users)
    database = copy_to(ledger, workdir / "subgate.db")
    if postgres is not None:
        postgres_ledger.to_postgres(database, postgres)
    keys, token = write_keys(workdir), new_token()
    fake_port, port = free_port(), free_port()
    gateway = f"http://127.0.0.1:{fake_port}/gateway.do"
    config = write_config(
        workdir / "subgate.toml", postgres or database, keys, token, gateway, plan.call_processes
    )
    fake_cmd = fake_gateway_command(fake_port, keys)
    base = f"http://127.0.0.1:{port}"
    with serving(fake_cmd, fake_port, ROOT, workdir / "fake.log") as fake:
        with serving(command(config, port), port, ROOT, workdir / "server.log") as server:
            # Warmed up on the users the main run reaches last.
            warm_from = (plan.users // 2) * plan.attempts_per_user
            _wrk(base, token, plan, workdir, warm_from, seconds=2)
            watch = Foreign(server.pid, fake.pid)
            before = tree_cpu_seconds(server.pid), cpu_seconds(fake.pid)
            commits_before, switches = commit_metrics(port), SwitchCount(server.pid).start()
            started_ms = int(time.time() * 1000)
            load = _wrk(base, token, plan, workdir, 0, plan.seconds)
            ended_ms = int(time.time() * 1000)
            foreign = watch.stop()
            cpu = tree_cpu_seconds(server.pid) - before[0], cpu_seconds(fake.pid) - before[1]
            commits = _commit_delta(commits_before, commit_metrics(port), load.load.seconds)
            machine = {"context_switches_per_request": switches.per_request(load.load.requests)}
            if plan.syscall_probe:  # users the run does not reach: their sends balance like any
                probe_from = (plan.users * 3 // 4) * plan.attempts_per_user
                machine |= syscall_probe(
                    server.pid,
                    lambda: (
                        _wrk(base, token, plan, workdir, probe_from, PROBE_SECONDS).load.requests
                    ),
                )
            drained = _drain(database, postgres)
        # Counted once the server has stopped: a send whose request was still on its way when
        # the drain looked (the syscall probe's strace holds the server up while wrk ends) is
        # made after it, and the platform's count must include it as the books do.
        with urllib.request.urlopen(f"http://127.0.0.1:{fake_port}/stats") as answer:
            stats: dict[str, Any] = json.loads(answer.read())
    if postgres is not None:
        postgres_ledger.to_sqlite(postgres, database)
    books = count_books(database, plan.credits, plan.users, stats)
    store_url = postgres or f"sqlite:///{database.resolve()}"
    sample = asyncio.run(fold_sample(store_url, plan.credits, books.pop("sent_by_user")))
    timing = _timing(database, started_ms, ended_ms)
    sends_per_second = timing.pop("sent_in_run") / ((ended_ms - started_ms) / 1000)
    result = {
        "plan": plan.__dict__,
        "ledger": ledger.meta,
        "sends_per_second": round(sends_per_second, 1),
        "attempts": {**load.load.as_dict(), **load.counters},
        "server_reserve_to_sent": timing,
        "cpu_us_per_sent": {
            "subgate": round(cpu[0] / max(sends_per_second * load.load.seconds, 1) * 1e6, 1),
            "fake_gateway": round(cpu[1] / max(sends_per_second * load.load.seconds, 1) * 1e6, 1),
        },
        "writer": commits,
        **machine,
        **foreign,
        "drained": drained,
        "books": books,
        "fold_sample": sample,
    }
    result["targets"] = {
        f"sends_per_second_at_least_{SENDS_TARGET:.0f}": verdict(
            sends_per_second, SENDS_TARGET, below=False
        ),
        "zero_double_spends": "met" if books["balanced"] and not sample["differing"] else "MISSED",
    }
    print(
        f"  sends {plan.name}: {sends_per_second:.0f} sent/s; attempts {load.load.rps:.0f}/s "
        f"p50 {load.load.p50_ms:.1f} ms p99 {load.load.p99_ms:.1f} ms; "
        f"books balanced: {books['balanced']}",
        flush=True,
    )
    return result


def _wrk(
    base: str, token: str, plan: SendsPlan, workdir: Path, offset: int, seconds: float
) -> ScriptResult:
    args = [
        APP_ID,
        token,
        str(plan.users),
        str(plan.credits),
        str(plan.extra),
        str(plan.duplicates),
        ONE_TIME,
        "2",
        str(offset),
    ]
    return run_script(
        base,
        LUA,
        args,
        connections=plan.connections,
        seconds=seconds,
        workdir=workdir,
        name="sends",
        counters=COUNTERS,
    )


def commit_metrics(port: int) -> tuple[float, float]:
    """(seconds, batches) of ``subgate_store_commit_seconds`` from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as answer:
        text = answer.read().decode()
    values = {
        name: float(value)
        for name, _, value in (line.partition(" ") for line in text.splitlines())
        if name in ("subgate_store_commit_seconds_sum", "subgate_store_commit_seconds_count")
    }
    return (
        values.get("subgate_store_commit_seconds_sum", 0.0),
        values.get("subgate_store_commit_seconds_count", 0.0),
    )


def _commit_delta(
    before: tuple[float, float], after: tuple[float, float], seconds: float
) -> dict[str, float]:
    """The single writer during the run: batches/s, mean batch time, share of time busy."""
    busy, batches = after[0] - before[0], after[1] - before[1]
    return {
        "batches_per_second": round(batches / seconds, 1),
        "mean_batch_ms": round(busy / max(batches, 1) * 1000, 3),
        "busy_share": round(busy / seconds, 3),
    }


_BUSY = "SELECT count(*) FROM messages WHERE status IN ('pending', 'sending')"


def _drain(database: Path, postgres: str | None = None, deadline: float = 30.0) -> bool:
    """Wait until no message is reserved but unattempted or in flight."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if postgres is not None:
            busy = int(fetch_value(postgres, _BUSY))
        else:
            with read_only(database) as db:
                busy = db.execute(_BUSY).fetchone()[0]
        if busy == 0:
            return True
        time.sleep(0.2)
    return False


def _timing(database: Path, started_ms: int, ended_ms: int) -> dict[str, Any]:
    """Sends completed during the run, and the server-side time from reservation to ``sent``."""
    with read_only(database) as db:
        rows = db.execute(
            "SELECT sent_at - created_at FROM messages WHERE status = 'sent' "
            "AND sent_at BETWEEN ? AND ? AND created_at >= ?",
            (started_ms, ended_ms, started_ms),
        ).fetchall()
    summary = latency_summary([row[0] / 1000 for row in rows])
    return {**summary, "sent_in_run": len(rows)}
