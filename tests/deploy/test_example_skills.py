"""The skills under examples/skills, run end to end by a real node that scanned them."""

from __future__ import annotations

import hashlib
import json

from tests.e2e.conftest import E2E
from tests.nats_cluster import REPO

EXAMPLES = REPO / "examples" / "skills"
RUNNABLE = ["json-transform", "local-weather", "sha256", "word-count"]


async def test_every_example_skill_runs_through_a_node(e2e: E2E) -> None:
    await e2e.start_node("examples", extra=["--skills-dir", str(EXAMPLES)])
    node = await e2e.wait_node("examples", "alive", skills=RUNNABLE)
    # speech-to-text needs whisper-cli: found, gated, reported with what it lacks.
    assert sorted(node["skills"]) == RUNNABLE, node
    assert node["unavailable"] == ["speech-to-text"], node

    cases = {
        "word-count": ({"text": "one two\nthree"}, {"lines": 2, "words": 3, "chars": 13}),
        "json-transform": (
            {"data": {"a": {"b": [1, 2]}, "c": None}, "select": ["a.b.1", "c"]},
            {"a.b.1": 2, "c": None},
        ),
        "local-weather": (
            {"city": "lisbon"},
            {
                "city": "Lisbon",
                "forecast": "sunny",
                "high_c": 24,
                "low_c": 16,
                "source": "local file",
            },
        ),
        "sha256": (
            {"text": "grüße"},
            {"sha256": hashlib.sha256("grüße".encode()).hexdigest(), "bytes": 7},
        ),
    }
    for skill, (payload, expected) in cases.items():
        done = await e2e.cli(
            "submit", "--skill", skill, "--payload", json.dumps(payload), "--wait", "--json"
        )
        assert done.code == 0, (skill, done)
        assert (done.json["state"], done.json["node_id"]) == ("succeeded", "examples"), done
        assert done.json["result"] == expected, (skill, done.json)

    unknown = await e2e.cli(
        "submit",
        "--skill",
        "local-weather",
        "--payload",
        '{"city": "Atlantis"}',
        "--max-attempts",
        "1",
        "--wait",
        "--json",
    )
    assert unknown.code == 1, unknown
    assert unknown.json["state"] == "failed", unknown.json
    assert "no forecast for 'Atlantis'" in unknown.json["error"], unknown.json

    # Only runnable skills have holders; the gated one is listed with what the node lacks.
    skills = {s["name"]: s for s in (await e2e.cli("skills", "--json")).json["skills"]}
    assert set(RUNNABLE) <= set(skills)
    assert skills["speech-to-text"]["holders"] == []
    (would,) = skills["speech-to-text"]["would_be_holders"]
    assert "bin:whisper-cli" in would["lacks"]
