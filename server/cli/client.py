"""A running Subgate's ``/v1`` API as the operator commands call it: where it is, the token,
and every answer that is not a success turned into one line (``CommandFailed``) that carries
the API's error code."""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp

from server.cli.failure import USAGE_STATUS, CommandFailed
from server.cli.paths import DATA_DIR
from server.dev.mode import dev_keys
from server.settings.secret_files import secret_value

TOKEN_VARIABLE = "SUBGATE_TOKEN"  # noqa: S105 (the variable's name, not a token)
DEFAULT_URL = "http://127.0.0.1:8080"
CALL_TIMEOUT_SECONDS = 30.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ApiTarget:
    """Which Subgate to ask, and with which token (never printed)."""

    url: str
    token: str


def add_target_options(parser: argparse.ArgumentParser) -> None:
    """``--url`` and ``--token``, as every command that talks to a running Subgate takes them."""
    parser.add_argument(
        "--url", default=DEFAULT_URL, help="the running Subgate (default: %(default)s)"
    )
    parser.add_argument(
        "--token",
        help=f"an API token (default: ${TOKEN_VARIABLE}, else the dev token under ./data/dev/)",
    )


def target_of(args: argparse.Namespace, data_dir: Path) -> ApiTarget:
    """The target the options name; the token from ``--token``, ``$SUBGATE_TOKEN`` or dev mode's
    token file (either may name a file holding it), else ``CommandFailed`` saying where to put
    one."""
    token = args.token or os.environ.get(TOKEN_VARIABLE) or _dev_token(data_dir)
    if not token:
        raise CommandFailed(f"no API token: pass --token or set ${TOKEN_VARIABLE}", USAGE_STATUS)
    try:  # the token, or the path of a file holding it, as in the settings
        token = secret_value(token, Path.cwd())
    except ValueError as error:
        raise CommandFailed(str(error), USAGE_STATUS) from None
    return ApiTarget(url=args.url.rstrip("/"), token=token)


def _dev_token(data_dir: Path) -> str | None:
    path = dev_keys(data_dir).api_token
    return path.read_text("ascii").strip() if path.is_file() else None


class SubgateApi:
    """Calls on one session; each answers the decoded JSON body of a 2xx answer."""

    def __init__(self, target: ApiTarget, session: aiohttp.ClientSession) -> None:
        self.target = target
        self._session = session

    async def get(
        self, path: str, params: Mapping[str, str] | None = None, seconds: float | None = None
    ) -> Any:
        """GET ``path`` (below the API's URL) with the query ``params``."""
        return await self._call("GET", path, params=params or {}, seconds=seconds)

    async def post(self, path: str, body: object) -> Any:
        """POST ``body`` as JSON to ``path``."""
        return await self._call("POST", path, json=body)

    async def _call(
        self, method: str, path: str, seconds: float | None = None, **extra: Any
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.target.token}"}
        limit = aiohttp.ClientTimeout(total=seconds or CALL_TIMEOUT_SECONDS)
        url = self.target.url + path
        try:
            async with self._session.request(
                method, url, headers=headers, timeout=limit, **extra
            ) as response:
                body = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            why = str(error) or type(error).__name__
            raise CommandFailed(f"cannot reach Subgate at {self.target.url}: {why}") from None
        return answer_of(status, body)


async def with_api(args: argparse.Namespace, call: Callable[[SubgateApi], Awaitable[T]]) -> T:
    """``call`` on the API the options name, on a session of its own."""
    async with aiohttp.ClientSession() as session:
        return await call(SubgateApi(target_of(args, DATA_DIR), session))


def app_path(app_id: str, *segments: str) -> str:
    """``/v1/apps/{app_id}/...``, each segment quoted (an id never changes the path's shape)."""
    return "/".join(["/v1/apps", *(quote(part, safe="") for part in (app_id, *segments))])


def answer_of(status: int, body: Any) -> Any:
    """A success's body, or ``CommandFailed`` naming the status and the API's error code."""
    if 200 <= status < 300:
        return body
    error = body.get("error", {}) if isinstance(body, dict) else {}
    code, message = error.get("code", "?"), error.get("message", "")
    if status in (401, 403):
        raise CommandFailed(f"Subgate refused the token ({status} {code}: {message})")
    raise CommandFailed(f"Subgate answered {status} {code}: {message}")
