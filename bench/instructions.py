"""Instructions per stored notification, counted by callgrind: an A/B that carries across machines.

Requests a second move with the machine and with whatever else shares it; the instructions one
notification costs do not (valgrind counts them, whatever the other core is doing). This posts
signed notifications one at a time through ``build_app`` in one process under callgrind, twice
(``--count`` and three times that), and reports the difference per notification, so that
start-up is left out. Give it several checkouts (say, the commit before a change and this one):
each runs its own code with this interpreter on the same keys and bodies, so the pair differs in
the code alone. ``--guarded`` serves through ``server.web.serving``'s connection guards, as
``run.py serve`` does (trees that have them).

    python -m bench.instructions [TREE ...] [--count N] [--guarded]

Needs valgrind (Debian's package). A tree takes about two minutes, two at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
APP_ID = "2021000000000001"
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
WARM_UP = 20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions")
    parser.add_argument("trees", type=Path, nargs="*", default=[SCRIPT.parent.parent])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--guarded", action="store_true")
    parser.add_argument("--post", type=Path, help=argparse.SUPPRESS)  # the child's workspace
    args = parser.parse_args(argv)
    if args.post is not None:
        asyncio.run(_post(args.post, args.count, args.guarded))
        return 0
    with tempfile.TemporaryDirectory() as workspace:
        _prepare(Path(workspace), 3 * args.count + WARM_UP)
        runs = [(tree, n) for tree in args.trees for n in (args.count, 3 * args.count)]
        with ThreadPoolExecutor(max_workers=2) as pool:
            totals = list(pool.map(lambda run: _count(args, Path(workspace), *run), runs))
    first: float | None = None
    for index, tree in enumerate(args.trees):
        small, large = totals[2 * index : 2 * index + 2]
        per = (large - small) / (2 * args.count)
        first = first or per
        print(f"{tree}: {per:,.0f} instructions per notification ({per / first:.4f} of the first)")
    return 0


def _prepare(workspace: Path, count: int) -> None:
    """Fresh keys and ``count`` bodies signed now (a cached body may be stale by now)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from bench.bodies import make_bodies

    alipay, app = (rsa.generate_private_key(65537, 2048) for _ in range(2))
    pem = serialization.Encoding.PEM
    (workspace / "alipay_public.pem").write_bytes(
        alipay.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    (workspace / "app_private.pem").write_bytes(
        app.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    make_bodies(workspace / "bodies.txt", count, alipay, APP_ID, datetime.now(UTC))


def _count(args: argparse.Namespace, workspace: Path, tree: Path, n: int) -> int:
    out = workspace / f"callgrind-{os.getpid()}-{abs(hash((tree, n)))}.out"
    command = [
        *("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"),
        *(sys.executable, str(SCRIPT), "--post", str(workspace), "--count", str(n)),
        *(["--guarded"] if args.guarded else []),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    out.unlink(missing_ok=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"the counted run failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


async def _post(workspace: Path, n: int, guarded: bool) -> None:
    """The counted child: the tree in the working directory, serving on a port of its own."""
    sys.path.insert(0, os.getcwd())
    from aiohttp import ClientSession

    runner, port = await _serve(workspace, guarded)
    with (workspace / "bodies.txt").open("rb") as lines:
        bodies = [next(lines).rstrip(b"\n") for _ in range(n + WARM_UP)]
    async with ClientSession() as http:
        for body in bodies:
            url = f"http://127.0.0.1:{port}/alipay/notify"
            async with http.post(url, data=body, headers=FORM) as answer:
                if await answer.text() != "success":
                    raise SystemExit(f"not stored: {answer.status}")
    await runner.cleanup()


async def _serve(workspace: Path, guarded: bool) -> tuple[Any, int]:
    from aiohttp import web

    from server.settings import settings_from_mapping

    try:
        from server.wiring import build_app
    except ImportError:  # a tree from before server/ was split by capability
        from server import build_app  # type: ignore[attr-defined,no-redef]
    app = {
        "app_id": APP_ID,
        "alipay_public_key": str(workspace / "alipay_public.pem"),
        "app_private_key": str(workspace / "app_private.pem"),
    }
    database = Path(tempfile.mkdtemp(dir=workspace)) / "subgate.db"  # one per counted run
    storage = {"url": f"sqlite:///{database}"}
    settings = settings_from_mapping({"storage": storage, "apps": [app]}, base_dir=workspace)
    if guarded:
        from server.web.serving import GuardedSite, guarded_runner

        runner = guarded_runner(build_app(settings), access_log=None)
        await runner.setup()
        site = GuardedSite(runner, "127.0.0.1", 0, 1000)
        await site.start()
        return runner, site.port
    runner = web.AppRunner(build_app(settings), access_log=None)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    return runner, int(tcp._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]


if __name__ == "__main__":
    sys.exit(main())
