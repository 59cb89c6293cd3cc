"""docs/log.md is a contract outside teams implement from: its worked byte-level examples
and partition test vectors must be what the code does.

Each ``<!-- wire-example NAME -->`` in the doc is followed by a ```json block (the Kafka
record: topic, partition count, partition, key, headers, and the decoded value in the
``$decimal``/``$datetime``/``$bytes`` convention of ``samples/record_samples.py``) and a
```hex block (the value's bytes, ``#`` starts an annotation). The serde must decode the
hex to exactly the documented value and encode the documented value to exactly the hex.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from samples.record_samples import from_json

from ordinance.processors.audit.chain import CHAIN_HASH, CHAIN_PREV, record_hash
from ordinance.streams.partitioner import murmur2, partition_for
from ordinance.streams.serde import HEADER_SIZE, MAGIC, Decoded, Serde
from ordinance.streams.topics import AGENT_ACTIONS, AGENT_DECISIONS, DEFAULT_PREFIX

DOC = Path(__file__).resolve().parents[2] / "docs" / "log.md"
_EXAMPLE = re.compile(
    r"<!-- wire-example (\w+) -->.*?```json\n(.*?)```.*?```hex\n(.*?)```", re.DOTALL
)
_VECTORS = re.compile(r"<!-- partition-vectors -->\n((?:\|.*\n)+)")


@dataclass(frozen=True)
class Example:
    schema: str
    record: dict[str, Any]
    value: bytes


def _hex(block: str) -> bytes:
    """The bytes of an annotated hex block: everything after ``#`` on a line is prose."""
    return bytes.fromhex("".join(line.split("#", 1)[0] for line in block.splitlines()))


def _examples() -> dict[str, Example]:
    text = DOC.read_text(encoding="utf-8")
    found: dict[str, Example] = {}
    for name, json_block, hex_block in _EXAMPLE.findall(text):
        assert name not in found, f"two wire examples named {name} in {DOC}"
        found[name] = Example(name, json.loads(json_block), _hex(hex_block))
    return found


EXAMPLES = _examples()
SERDE = Serde()
SLOW_SERDE = Serde(fast=False)  # the fastavro path: both must agree with the doc


def test_the_doc_has_both_worked_examples() -> None:
    assert set(EXAMPLES) == {"ActionRequest", "Decision"}


@pytest.mark.parametrize("serde", [SERDE, SLOW_SERDE], ids=["fast", "fastavro"])
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_documented_hex_decodes_to_the_documented_value(name: str, serde: Serde) -> None:
    example = EXAMPLES[name]
    decoded = serde.decode(example.value)
    assert isinstance(decoded, Decoded), decoded
    assert decoded.name == example.record["schema"] == name
    assert decoded.value == from_json(example.record["value"])
    assert example.value[:2] == MAGIC
    assert decoded.writer_fingerprint == example.value[2:HEADER_SIZE]
    assert decoded.writer_fingerprint == serde.registry.current(name).fingerprint


@pytest.mark.parametrize("serde", [SERDE, SLOW_SERDE], ids=["fast", "fastavro"])
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_documented_value_encodes_to_the_documented_hex(name: str, serde: Serde) -> None:
    example = EXAMPLES[name]
    encoded = serde.encode(name, from_json(example.record["value"]))
    assert encoded == example.value, (
        f"docs/log.md's {name} bytes are stale; the serde now writes {encoded.hex()}"
    )


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_example_sits_on_the_partition_its_agent_id_hashes_to(name: str) -> None:
    record = EXAMPLES[name].record
    key = record["key"].encode()
    assert record["partition"] == partition_for(key, record["partitions"])
    value = from_json(record["value"])
    agent_id = value["agent"]["id"] if name == "ActionRequest" else value["agent_id"]
    assert key == agent_id.encode()


def test_the_examples_use_the_prefixed_topic_names() -> None:
    assert EXAMPLES["ActionRequest"].record["topic"] == DEFAULT_PREFIX + AGENT_ACTIONS
    assert EXAMPLES["Decision"].record["topic"] == DEFAULT_PREFIX + AGENT_DECISIONS
    assert DEFAULT_PREFIX == "ordinance."


def test_the_action_needs_no_headers_and_answers_on_its_own_partition() -> None:
    action, decision = EXAMPLES["ActionRequest"].record, EXAMPLES["Decision"].record
    assert action["headers"] == []
    assert decision["partition"] == action["partition"]
    assert decision["key"] == action["key"]
    assert from_json(decision["value"])["request_id"] == from_json(action["value"])["request_id"]


def test_the_decision_chain_lives_in_its_headers_not_its_fields() -> None:
    example = EXAMPLES["Decision"]
    value = from_json(example.record["value"])
    assert value["prev_hash"] is None and value["hash"] is None
    headers = [(name, bytes.fromhex(data)) for name, data in example.record["headers"]]
    assert [name for name, _ in headers] == [CHAIN_PREV, CHAIN_HASH]
    (_, prev), (_, own) = headers
    assert len(prev) == len(own) == 32
    assert own == record_hash(prev, example.record["key"].encode(), example.value)


def _vectors() -> list[tuple[str, int, int, int]]:
    match = _VECTORS.search(DOC.read_text(encoding="utf-8"))
    assert match is not None, "docs/log.md lost its partition test vectors"
    rows = []
    for line in match.group(1).splitlines()[2:]:  # after the header and the --- row
        key, hashed, of_4, of_12 = (cell.strip() for cell in line.strip("|").split("|"))
        rows.append((key.strip("`"), int(hashed), int(of_4), int(of_12)))
    return rows


VECTORS = _vectors()


def test_the_doc_has_partition_vectors() -> None:
    assert len(VECTORS) >= 4
    assert any(hashed < 0 for _, hashed, _, _ in VECTORS), "a negative hash shows the mask"


@pytest.mark.parametrize(("key", "hashed", "of_4", "of_12"), VECTORS)
def test_the_documented_partition_vectors_are_the_partitioner(
    key: str, hashed: int, of_4: int, of_12: int
) -> None:
    data = key.encode()
    assert murmur2(data) == hashed
    assert partition_for(data, 4) == of_4 == (hashed & 0x7FFFFFFF) % 4
    assert partition_for(data, 12) == of_12 == (hashed & 0x7FFFFFFF) % 12
