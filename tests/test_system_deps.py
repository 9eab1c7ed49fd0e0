"""`make test` installs the system packages its e2e needs (extension/test/e2e/system-deps.sh):
apt-get as root, `sudo -n` when sudo allows it, else one line with the exact command and a
non-zero exit. apt-get, dpkg, sudo and id are stubs here: nothing is installed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "extension" / "test" / "e2e" / "system-deps.sh"

STUBS = {
    # dpkg -s PKG: installed when PKG is in $STUB_INSTALLED
    "dpkg": 'case " $STUB_INSTALLED " in *" $2 "*) exit 0;; *) exit 1;; esac',
    "id": 'echo "$STUB_UID"',
    "apt-get": 'echo "apt-get $* DEBIAN_FRONTEND=${DEBIAN_FRONTEND:-}" >> "$STUB_LOG"',
    # sudo -n true: allowed when $STUB_SUDO is 1; sudo -n CMD...: logged, then run
    "sudo": 'echo "sudo $*" >> "$STUB_LOG"; [ "$STUB_SUDO" = 1 ] || exit 1; shift; [ "$1" = true ] && exit 0; exec "$@"',
}


def deps(
    tmp_path: Path,
    *,
    uid: int,
    sudo: bool = False,
    installed: str = "",
    cached: bool = False,
    chromium: str | None = None,
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in STUBS.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    if cached:
        (cache / ".stamp-code-server").touch()
    log = tmp_path / "log"
    log.write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("BONSAI_E2E_CHROMIUM", "DEBIAN_FRONTEND")}
    env.update(
        {
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "BONSAI_E2E_CACHE": str(cache),
            "STUB_UID": str(uid),
            "STUB_SUDO": "1" if sudo else "0",
            "STUB_INSTALLED": installed,
            "STUB_LOG": str(log),
        }
    )
    if chromium:
        env["BONSAI_E2E_CHROMIUM"] = chromium
    r = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    return r, log.read_text().splitlines()


def test_root_installs_what_is_missing(tmp_path: Path) -> None:
    r, calls = deps(tmp_path, uid=0)
    assert r.returncode == 0, r.stderr
    assert calls == [
        "apt-get update -qq DEBIAN_FRONTEND=noninteractive",
        "apt-get install -y -qq chromium libkrb5-dev DEBIAN_FRONTEND=noninteractive",
    ]


def test_a_user_sudo_allows_installs_with_sudo_n(tmp_path: Path) -> None:
    r, calls = deps(tmp_path, uid=1000, sudo=True, installed="chromium")
    assert r.returncode == 0, r.stderr
    assert "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libkrb5-dev" in calls
    assert calls[-1] == "apt-get install -y -qq libkrb5-dev DEBIAN_FRONTEND=noninteractive"


def test_otherwise_one_line_with_the_exact_command_and_a_failure(tmp_path: Path) -> None:
    r, calls = deps(tmp_path, uid=1000, sudo=False)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0
    assert "run: sudo sh -c 'apt-get update && apt-get install -y chromium libkrb5-dev'" in r.stderr
    assert not [c for c in calls if c.startswith("apt-get")]


@pytest.mark.parametrize(
    "case",
    [
        {"installed": "chromium libkrb5-dev"},
        {"cached": True, "chromium": "/opt/chrome/chrome"},  # code-server built already, another browser
    ],
)
def test_nothing_missing_installs_nothing(tmp_path: Path, case: dict[str, object]) -> None:
    r, calls = deps(tmp_path, uid=1000, **case)  # type: ignore[arg-type]
    assert r.returncode == 0 and r.stderr == "" and calls == []


def test_make_test_runs_it_before_the_e2e_tools() -> None:
    r = subprocess.run(
        ["make", "-n", "-C", str(ROOT / "extension"), "e2e-tools"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    deps_at = next(i for i, ln in enumerate(lines) if "system-deps.sh" in ln)
    tools_at = next(i for i, ln in enumerate(lines) if "setup-tools.sh" in ln)
    assert deps_at < tools_at
    assert "make test" in (ROOT / ".ci" / "run").read_text()
