"""deploy/: the systemd unit starts a command that exists (its ExecStart, run with --help) and
the example configuration for PostgreSQL replicas loads, its secrets read from their files."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from server.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "subgate@.service"
EXAMPLE = ROOT / "deploy" / "subgate.toml"
SUBGATE = Path(sys.executable).parent / "subgate"  # the console script, as pip installs it
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def unit_settings(section: str) -> dict[str, str]:
    """The ``key=value`` lines of one section of the unit (comments and blanks skipped)."""
    found: dict[str, str] = {}
    current = None
    for line in UNIT.read_text().splitlines():
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found[key] = value
    return found


def test_the_units_exec_start_runs_help() -> None:
    command = shlex.split(unit_settings("Service")["ExecStart"].replace("%i", "8080"))
    assert command[0] == "/opt/subgate/.venv/bin/subgate"

    result = subprocess.run(
        [str(SUBGATE), *command[1:], "--help"], capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: subgate serve")
    assert command[command.index("--config") + 1] == "/etc/subgate/subgate.toml"


def test_the_unit_runs_as_its_own_user_and_stops_gracefully() -> None:
    service = unit_settings("Service")

    assert (service["User"], service["KillSignal"]) == ("subgate", "SIGTERM")
    assert service["Restart"] == "on-failure"


def test_the_example_config_loads_with_its_secrets_read_from_files(tmp_path: Path) -> None:
    etc = tmp_path / "etc-subgate"
    secrets = etc / "secrets"
    secrets.mkdir(parents=True)
    database = "postgresql://subgate:s3cret@db.internal:5432/subgate"
    for name, text in [
        ("database-url", database),
        ("api-token", "operator-token-0123456789abcdef"),
        ("orders.whsec", WHSEC),
    ]:
        (secrets / name).write_text(text + "\n")
        (secrets / name).chmod(0o600)
    config = etc / "subgate.toml"
    config.write_text(EXAMPLE.read_text().replace("/etc/subgate/", f"{etc}/"))
    config.chmod(0o600)

    settings = load_settings(config, {"SUBGATE_SERVER__PORT": "8081"})

    assert settings.storage.url == database
    assert (settings.server.port, settings.storage.pool_max) == (8081, 10)
    assert settings.tokens[0].token.get_secret_value() == "operator-token-0123456789abcdef"
    [orders] = settings.destinations
    assert len(orders.signing_keys(settings.base_dir)) == 1
    assert settings.apps[0].templates[0].kind == "one_time"
