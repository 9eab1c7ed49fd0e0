"""Writing a budgeted variant into an experiment file: appended to its `variants:` list with that
list's own indentation, and only if the file still parses with no new problem (the file is
replaced in one step, so a crash leaves it whole)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError


def insert_variant(text: str, variant: str) -> str:
    """`text` with `variant` (a `- name: ...` item written at two spaces) appended to the end of
    its top-level `variants:` list."""
    import yaml

    try:
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        raise UserError(
            f"the experiment file is not valid YAML ({e}); fix it before adding a variant"
        ) from None
    seq = None
    if isinstance(root, yaml.MappingNode):
        for k, v in root.value:
            if isinstance(k, yaml.ScalarNode) and k.value == "variants":
                seq = v
    if not isinstance(seq, yaml.SequenceNode) or seq.flow_style:
        raise UserError("the experiment file has no block `variants:` list to add the variant to")
    dash = seq.value[0].start_mark.column - 2 if seq.value else 2
    lines = text.splitlines(keepends=True)
    end = seq.end_mark.line if seq.end_mark.column == 0 else seq.end_mark.line + 1
    while end > 0 and end <= len(lines) and not lines[end - 1].strip():
        end -= 1  # after the last item, before the blank lines that follow it
    body = "".join(
        " " * max(dash, 0) + line[2:] if line.startswith("  ") else line for line in variant.splitlines(True)
    )
    head = "".join(lines[:end])
    if head and not head.endswith("\n"):
        head += "\n"
    return head + body + "".join(lines[end:])


def append_variant(file: Path, variant: str) -> None:
    from ..experiment import load_experiment, parse_experiment

    before = load_experiment(file)
    text = file.read_text(encoding="utf-8")
    new = insert_variant(text, variant)
    after = parse_experiment(new, file)
    if len(after.errors) > len(before.errors):
        first = after.errors[len(before.errors)]
        raise UserError(
            f"the variant would not be valid in {file.name} ({first.message}); nothing was written"
        )
    tmp = file.with_name(f".{file.name}.bonsai-tmp")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, file)
