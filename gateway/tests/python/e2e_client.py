"""Drives session-gateway with the Python `mcp` SDK (pinned: mcp==2.3.0) across two nodes.

usage: e2e_client.py NODE_A_URL NODE_B_URL MATH_BACKEND_BASE_URL OWNER_TOKEN OTHER_TOKEN

Exits 0 when every check held; prints one line per step. With SESSIONS_SHOW set (a JSON
list: the `session-gateway sessions show --json --show-values ...` command without the
id), it also checks that storage names the backend session the backend has open.
"""

import json
import os
import subprocess
import sys

import anyio
import httpx2
from mcp import Client
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

A, B, MATH, OWNER, OTHER = sys.argv[1:6]
JSON_SSE = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def text(result) -> str:
    assert not result.is_error, f"tool error: {result.content}"
    return "".join(c.text for c in result.content if getattr(c, "text", None) is not None)


def check(ok: bool, what: str) -> None:
    if not ok:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}", flush=True)


async def on_node(url: str, sid: str, init, token: str):
    """A ClientSession on `url` resuming session `sid` (no new handshake)."""
    http = create_mcp_http_client(headers={"mcp-session-id": sid, "authorization": f"Bearer {token}"})
    return http, streamable_http_client(url, http_client=http, terminate_on_close=False)


async def main() -> None:
    sids: list[str] = []

    async def capture(response: httpx2.Response) -> None:
        sid = response.headers.get("mcp-session-id")
        if sid and sid not in sids:
            sids.append(sid)

    http_a = create_mcp_http_client(headers={"authorization": f"Bearer {OWNER}"})
    http_a.event_hooks["response"].append(capture)

    # A default-configured client (mode="auto": probes server/discover first). The gateway
    # offers only handshake-era versions, so the client falls back to initialize and gets a
    # session id.
    async with Client(streamable_http_client(A, http_client=http_a, terminate_on_close=False)) as client:
        init = client.session.initialize_result
        check(init is not None, "default client fell back to the initialize handshake")
        check(init.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS, f"negotiated {init.protocol_version}")
        check(len(sids) == 1, f"got an Mcp-Session-Id from node A ({sids[0][:8]}...)")
        sid = sids[0]
        names = sorted(t.name for t in (await client.list_tools()).tools)
        check("math__counter" in names and "text__echo" in names, f"tools on A: {', '.join(names)}")
        check(text(await client.call_tool("math__counter", {})) == "1", "math__counter on A -> 1")

        # Node B, same session id, no new handshake.
        http_b, transport_b = await on_node(B, sid, init, OWNER)
        async with transport_b as (read, write):
            async with ClientSession(read, write) as on_b:
                on_b.adopt(init)
                names_b = sorted(t.name for t in (await on_b.list_tools()).tools)
                check(names_b == names, "same tools through node B")
                check(text(await on_b.call_tool("math__add", {"a": 2, "b": 40})) == "42", "math__add on B -> 42")
                check(text(await on_b.call_tool("math__counter", {})) == "2", "math__counter on B -> 2 (same backend session)")

                # Another identity presenting the live session id is refused; the owner is unharmed.
                async with httpx2.AsyncClient() as raw:
                    r = await raw.post(
                        B,
                        headers={**JSON_SSE, "mcp-session-id": sid, "authorization": f"Bearer {OTHER}"},
                        json={"jsonrpc": "2.0", "id": 99, "method": "tools/list"},
                    )
                    check(r.status_code == 403, f"second identity refused on B ({r.status_code})")
                    r = await raw.post(
                        B,
                        headers={**JSON_SSE, "mcp-session-id": sid},
                        json={"jsonrpc": "2.0", "id": 98, "method": "tools/list"},
                    )
                    check(r.status_code == 403, f"unauthenticated caller refused on B ({r.status_code})")
                check(text(await on_b.call_tool("math__counter", {})) == "3", "owner unaffected: counter -> 3")

                # The math backend forgets its sessions: the next call through either node heals.
                async with httpx2.AsyncClient() as raw:
                    r = await raw.post(f"{MATH}/admin/forget")
                    check(r.status_code == 200, f"math backend forgot {r.text.strip()} session(s)")
                check(text(await on_b.call_tool("math__counter", {})) == "1", "healed on B: new backend session -> 1")
                check(text(await client.call_tool("math__counter", {})) == "2", "node A uses the same new backend session -> 2")
                check(text(await client.call_tool("text__counter", {})) == "1", "the other backend was untouched")
                async with httpx2.AsyncClient() as raw:
                    open_math = (await raw.get(f"{MATH}/admin/sessions")).text.split()
                check(len(open_math) == 1, "one math backend session open (no duplicate)")
                show = os.environ.get("SESSIONS_SHOW")
                if show:
                    # Storage names that same backend session (the operator CLI).
                    out = subprocess.run([*json.loads(show), sid], capture_output=True, text=True, check=True).stdout
                    stored = {b["name"]: b["session"] for b in json.loads(out)["backends"]}
                    check(stored["math"] == open_math[0], f"sessions show: math backend session {stored['math'][:8]}... is the open one")

                # DELETE through node B; node A answers 404 at once.
                async with httpx2.AsyncClient() as raw:
                    r = await raw.delete(B, headers={"mcp-session-id": sid, "authorization": f"Bearer {OWNER}"})
                    check(r.status_code in (200, 202, 204), f"DELETE on B -> {r.status_code}")
                    r = await raw.post(
                        A,
                        headers={**JSON_SSE, "mcp-session-id": sid, "authorization": f"Bearer {OWNER}"},
                        json={"jsonrpc": "2.0", "id": 97, "method": "tools/list"},
                    )
                    check(r.status_code == 404, f"node A answers {r.status_code} after DELETE on B")
                    left = (await raw.get(f"{MATH}/admin/sessions")).text.split()
                    check(left == [], "no math backend session left open")
                try:
                    await client.call_tool("math__counter", {})
                    check(False, "the SDK client on A sees the session gone")
                except MCPError as e:
                    check(True, f"the SDK client on A sees the session gone ({e.error.message[:40]})")
        await http_b.aclose()
    await http_a.aclose()
    print("python e2e: all checks held", flush=True)


anyio.run(main)
