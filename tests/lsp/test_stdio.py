"""The real `bonsai serve` over raw pipes: garbage on stdin never kills it, every bad frame gets
an error response, and stdout carries nothing but JSON-RPC frames (even when an op prints)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from modelbonsai.lsp import protocol as P

from .workspace import EXPERIMENT, make_workspace

NOISY = (
    EXPERIMENT
    + """\
  - name: noisy
    from: base
    ops:
      - test.noisy
"""
)


class RawClient:
    """Frames in and out by hand; the reader fails the test on any byte that is not a frame."""

    def __init__(self, cmd: list[str], cwd: Path):
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env
        )
        self.messages: list[dict[str, Any]] = []
        self.bad_output: list[bytes] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.stderr = b""

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr += line

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            header = out.readline()
            if not header:
                return
            if not header.startswith(b"Content-Length: "):
                self.bad_output.append(header)
                continue
            n = int(header.split(b":")[1])
            while (line := out.readline()) not in (b"\r\n", b""):
                if not line.startswith(b"Content-Type: "):
                    self.bad_output.append(line)
            msg = json.loads(out.read(n))
            with self.cond:
                self.messages.append(msg)
                self.cond.notify_all()

    def raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, obj: dict[str, Any]) -> None:
        body = json.dumps(obj).encode()
        self.raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def wait(self, pred: Any, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for m in self.messages:
                    if pred(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no such message; stderr:\n{self.stderr.decode(errors='replace')[-3000:]}"
                    )
                self.cond.wait(left)

    def call(self, msg_id: int, method: str, params: Any) -> dict[str, Any]:
        self.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        return self.wait(lambda m: m.get("id") == msg_id and "method" not in m)


def _bonsai() -> list[str]:
    exe = Path(sys.executable).parent / "bonsai"
    if exe.is_file():
        return [str(exe), "serve"]
    return [sys.executable, "-c", "import sys; from modelbonsai.cli import main; sys.exit(main(['serve']))"]


@pytest.fixture
def server(tmp_path: Path):
    make_workspace(tmp_path, NOISY)
    client = RawClient(_bonsai(), tmp_path)
    init = client.call(
        1,
        "initialize",
        {
            "processId": None,
            "rootUri": tmp_path.as_uri(),
            "capabilities": {},
            "initializationOptions": {
                "storagePath": str(tmp_path / "storage"),
                "trusted": True,
                "device": "cpu",
            },
        },
    )
    assert init["result"]["serverInfo"]["name"] == "bonsai"
    client.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    yield client
    if client.proc.poll() is None:
        client.proc.kill()
    client.proc.wait(10)


def _alive(client: RawClient, msg_id: int) -> None:
    reply = client.call(msg_id, P.JOBS, {})
    assert "result" in reply and "jobs" in reply["result"], reply
    assert client.proc.poll() is None


def test_garbage_on_stdin_does_not_kill_the_server(server: RawClient) -> None:
    c = server
    c.raw(os.urandom(512).replace(b"\n", b"") + b"\r\n")  # random bytes without a header
    _alive(c, 10)
    c.raw(b"garbage with no newline")  # glued to the next header: the header is still found
    _alive(c, 11)
    c.raw(b"Content-Length: 9\r\n\r\n{not json")
    reply = c.wait(lambda m: m.get("error", {}).get("code") == P.PARSE_ERROR)
    assert reply["id"] is None
    _alive(c, 12)
    c.raw(b"Content-Length: 4\r\n\r\n\xff\xfe\xfd\xfc")  # not UTF-8
    _alive(c, 13)
    c.send([1, 2, 3])  # type: ignore[arg-type]
    reply = c.wait(lambda m: m.get("error", {}).get("code") == P.INVALID_REQUEST)
    _alive(c, 14)
    reply = c.call(15, "textDocument/hover", {"nonsense": True})
    assert reply["error"]["code"] == P.INVALID_PARAMS
    reply = c.call(16, "bonsai/does-not-exist", {})
    assert reply["error"]["code"] == P.METHOD_NOT_FOUND
    reply = c.call(17, P.LINEAGE, {"folder": ["not", "a", "string"]})
    assert reply["error"]["code"] == P.INVALID_PARAMS and "params.folder" in reply["error"]["message"]
    reply = c.call(18, P.CANCEL, None)
    assert reply["error"]["code"] == P.INVALID_PARAMS
    c.send({"jsonrpc": "2.0", "method": "bonsai/unknownNotification", "params": {}})
    c.raw(b"Content-Type: application/vscode-jsonrpc\r\nContent-Length: 2\r\n\r\n{}")
    _alive(c, 19)
    reply = c.call(20, "shutdown", None)
    assert reply["result"] is None
    c.send({"jsonrpc": "2.0", "method": "exit"})
    assert c.proc.wait(15) == 0
    assert c.bad_output == [], "stdout carried something that is not a JSON-RPC frame"


def test_stdout_carries_only_json_rpc_even_when_an_op_prints(server: RawClient, tmp_path: Path) -> None:
    c = server
    reply = c.call(2, P.RUN, {"file": str(tmp_path / "exp.bonsai.yaml"), "variants": ["noisy"]})
    assert "result" in reply, reply
    job_id = reply["result"]["jobId"]
    done = c.wait(
        lambda m: (
            m.get("method") == P.JOB_CHANGED
            and m["params"]["job"]["id"] == job_id
            and m["params"]["job"]["state"] in P.JOB_FINAL_STATES
        ),
        60,
    )
    assert done["params"]["job"]["state"] == "done", done
    assert c.bad_output == [], c.bad_output
    assert b"a stray print from an op" in c.stderr and b"raw write to file descriptor 1" in c.stderr
    lineage = c.call(3, P.LINEAGE, {})["result"]
    assert "noisy" in {m["name"] for m in lineage["models"]}
