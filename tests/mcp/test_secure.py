"""``eventsrc mcp`` in secure mode runs with the credentials it is given: a reader reads,
a submitter submits, and a reader's run_task is refused with one clear line."""

from __future__ import annotations

from pathlib import Path

from tests.mcp.conftest import data_of, stdio_client, text_of
from tests.secure.conftest import SecureServer


async def test_a_reader_reads_and_is_refused_run_task(
    secure_cluster: SecureServer, tmp_path: Path
) -> None:
    creds = secure_cluster.creds
    async with stdio_client(secure_cluster.url, cwd=tmp_path, creds=creds("submitter")) as client:
        task = data_of(
            await client.call_tool(
                "submit_task",
                {"skills": ["python"], "payload": {"code": "print(1)"}, "task_id": "s1"},
            )
        )
        assert task["task_id"] == "s1"

    async with stdio_client(secure_cluster.url, cwd=tmp_path, creds=creds("reader")) as client:
        refused = await client.call_tool(
            "run_task", {"skills": ["python"], "payload": {"code": "print(1)"}}
        )
        assert refused.is_error
        message = text_of(refused)
        assert "run_task needs submitter credentials" in message and "reader" in message
        assert "\n" not in message.strip()
        assert data_of(await client.call_tool("get_task", {"task_id": "s1"}))["task_id"] == "s1"
        assert data_of(await client.call_tool("list_nodes", {}))["nodes"] == []


async def test_the_mcp_server_works_over_mutual_tls(
    tls_cluster: SecureServer, tmp_path: Path
) -> None:
    """``eventsrc mcp`` with the submitter's credentials and TLS files from the
    environment, on a server that wants client certificates."""
    tls = {
        f"EVENTSRC_{key.upper()}": path for key, path in tls_cluster.tls_files("submitter").items()
    }
    creds = tls_cluster.creds("submitter")
    async with stdio_client(tls_cluster.url, cwd=tmp_path, creds=creds, env=tls) as client:
        task = data_of(
            await client.call_tool(
                "submit_task",
                {"skills": ["python"], "payload": {"code": "print(1)"}, "task_id": "tls1"},
            )
        )
        assert task["task_id"] == "tls1"
        assert data_of(await client.call_tool("get_task", {"task_id": "tls1"}))["task_id"] == "tls1"
