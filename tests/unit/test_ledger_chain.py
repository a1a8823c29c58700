"""Ledger hashing against the committed golden vectors and RFC 8785."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tether.ledger.chain import GENESIS, canonical_json, chain_hash, entry_bytes, leaf_hash
from tether.ledger.events import new_event
from tether.ledger.store import Ledger

VECTORS_FILE = Path(__file__).parent.parent / "vectors" / "ledger_chain.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))


def independent_chain(events: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The contract, written from DESIGN.md alone: hashlib + rfc8785, nothing from tether."""
    prev = bytes(32)
    out = []
    for event in events:
        entry = rfc8785.dumps({k: v for k, v in event.items() if k not in ("prev_hash", "hash")})
        leaf = hashlib.sha256(b"\x00" + entry).digest()
        hash_ = hashlib.sha256(b"\x01" + prev + leaf).digest()
        out.append(
            {"entry": entry.decode("utf-8"), "leaf": leaf.hex(), "prev_hash": prev.hex(), "hash": hash_.hex()}
        )
        prev = hash_
    return out


def expected_vectors() -> list[dict[str, str]]:
    return [
        {key: vector[key] for key in ("entry", "leaf", "prev_hash", "hash")} for vector in VECTORS["vectors"]
    ]


def test_vectors_match_an_independent_implementation() -> None:
    events = [vector["event"] for vector in VECTORS["vectors"]]
    assert independent_chain(events) == expected_vectors()
    for vector in VECTORS["vectors"]:
        assert (vector["event"]["prev_hash"], vector["event"]["hash"]) == (
            vector["prev_hash"],
            vector["hash"],
        )


def test_vectors_match_the_module() -> None:
    prev = GENESIS
    computed = []
    for vector in VECTORS["vectors"]:
        entry = entry_bytes(vector["event"])
        leaf = leaf_hash(entry)
        hash_ = chain_hash(prev, leaf)
        computed.append(
            {"entry": entry.decode(), "leaf": leaf.hex(), "prev_hash": prev.hex(), "hash": hash_.hex()}
        )
        prev = hash_
    assert computed == expected_vectors()


def test_a_ledger_writing_the_vector_events_produces_the_vector_hashes(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db", chain_id=VECTORS["chain_id"]) as ledger:
        for vector in VECTORS["vectors"]:
            unsealed = vector["event"] | {"chain_id": None, "seq": None, "prev_hash": None, "hash": None}
            committed = ledger.append_sync(unsealed)
            assert (committed["prev_hash"], committed["hash"]) == (vector["prev_hash"], vector["hash"])
        stored = list(ledger.iter_events())
    assert [event["hash"] for event in stored] == [vector["hash"] for vector in VECTORS["vectors"]]


def test_entry_leaves_out_only_the_hash_fields() -> None:
    event = new_event("run.started") | {
        "chain_id": "chn_x",
        "seq": 0,
        "prev_hash": "00" * 32,
        "hash": "11" * 32,
    }
    entry = json.loads(entry_bytes(event))
    assert set(entry) == set(event) - {"prev_hash", "hash"}


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert chain_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    assert bytes(32) == GENESIS


def test_rfc8785_examples() -> None:
    # RFC 8785 section 3.2.2 (values) and 3.2.3 (sorting).
    value = {
        "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": '\u20ac$\u000f\nA\'B"\\\\"/',
        "literals": [None, True, False],
    }
    assert canonical_json(value) == (
        b'{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        b'"string":"\xe2\x82\xac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    keys = ["\u20ac", "\r", "\ufb33", "1", "\U0001f600", "\u0080", "\u00f6"]
    pairs = json.loads(canonical_json(dict.fromkeys(keys, 0)), object_pairs_hook=list)
    assert [key for key, _ in pairs] == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        float("inf"),
        2**53,
        {1: "not a string key"},
        {"when": object()},
        "lone surrogate \ud800",
    ],
)
def test_values_without_a_canonical_form_raise_value_error(value: Any) -> None:
    with pytest.raises(ValueError):
        canonical_json(value)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([84.1, 84.0, 1e21, 1e-7, 1e16, 0.0001, 0.00009, -0.0, 5e-324])
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
@example({"\ue000": 1, "\U0001f600": 2, "a": [84.0, 1e-5, 1e16, -0.0]})
@example({"duration_ms": 84.1, "bytes": 2**53 - 1, "note": '\u2028\x7f\x00\\"'})
def test_canonical_json_is_rfc8785(value: Any) -> None:
    try:
        reference = rfc8785.dumps(value)
    except ValueError:  # e.g. lone surrogates: both must refuse
        with pytest.raises(ValueError):
            canonical_json(value)
        return
    assert canonical_json(value) == reference
