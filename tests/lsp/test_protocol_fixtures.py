"""Every fixture message under tests/fixtures/protocol/ matches the shapes protocol.py declares.

The extension's TypeScript tests read the same files, so the two sides cannot drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelbonsai.lsp import protocol

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "protocol"
FILES = sorted(FIXTURES.glob("*.json"))


def test_one_fixture_per_method() -> None:
    methods = [json.loads(p.read_text())["method"] for p in FILES]
    assert sorted(methods) == sorted(protocol.METHODS), "fixtures and protocol.METHODS differ"
    assert len(methods) == len(set(methods))
    for p in FILES:
        assert p.name == json.loads(p.read_text())["method"].replace("/", "-") + ".json"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_fixture_matches_declared_shapes(path: Path) -> None:
    msg = json.loads(path.read_text())
    method = protocol.METHODS[msg["method"]]
    assert msg["kind"] == method.kind
    assert set(msg) <= {"method", "kind", "params", "result"}
    protocol.check(msg["params"], method.params, "params")
    if method.kind == "request":
        assert method.result is not None
        protocol.check(msg["result"], method.result, "result")
    else:
        assert "result" not in msg


def test_check_names_the_wrong_field() -> None:
    with pytest.raises(protocol.ShapeError, match=r"params\.models\[1\] must be string"):
        protocol.check({"base": "a", "models": ["b", 3]}, protocol.CompareParams)
    with pytest.raises(protocol.ShapeError, match=r"params\.jobId is missing"):
        protocol.check({}, protocol.CancelParams)
    with pytest.raises(protocol.ShapeError, match=r"params\.fromat is not a known field"):
        protocol.check({"id": "x", "dir": "d", "format": "hf", "fromat": 1}, protocol.ExportParams)
    with pytest.raises(protocol.ShapeError, match=r"must be 'hf' \| 'safetensors' \| 'onnx' \| 'executorch'"):
        protocol.check({"id": "x", "dir": "d", "format": "tflite"}, protocol.ExportParams)
    with pytest.raises(protocol.ShapeError, match=r"must be integer, got True"):
        protocol.check({"resultId": "r", "page": True}, protocol.ResultPageParams)
    with pytest.raises(protocol.ShapeError, match=r"must be number"):
        protocol.check(
            {
                "key": "acc",
                "name": "acc",
                "value": float("nan"),
                "unit": "",
                "higherIsBetter": True,
                "headline": True,
            },
            protocol.MetricInfo,
        )
    # LSP's own progress tokens are allowed on any request
    protocol.check({"jobId": "j", "workDoneToken": "t"}, protocol.CancelParams)


def test_inline_pages_in_fixtures_are_wire_envelopes() -> None:
    import base64

    from modelbonsai import wire

    for p in FILES:
        result = json.loads(p.read_text()).get("result") or {}
        if isinstance(result, dict) and "data" in result:
            decoded = wire.decode_result(base64.b64decode(result["data"]))
            assert decoded.kind and isinstance(decoded.meta, dict), p.name
