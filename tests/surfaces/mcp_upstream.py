"""A small real MCP server for the gateway's tests: filesystem-like and payment tools that
do nothing but RECORD every call they receive (tool name and the arguments exactly as they
arrived on the wire) as one JSON line in the file given by --record.

    python tests/surfaces/mcp_upstream.py --record calls.jsonl            # stdio
    python tests/surfaces/mcp_upstream.py --record calls.jsonl --http 8123  # streamable HTTP

Built with the low-level SDK server so nothing (no pydantic coercion) stands between the
wire and the record.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server


def _schema(**properties: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: {"type": kind} for name, kind in properties.items()},
    }


TOOLS = [
    types.Tool(name="read_file", description="Read a file.", input_schema=_schema(path="string")),
    types.Tool(
        name="write_file",
        description="Write a file.",
        input_schema=_schema(path="string", bytes="integer", content="string"),
    ),
    types.Tool(
        name="delete_path",
        description="Delete a file or directory.",
        input_schema=_schema(path="string", recursive="boolean"),
    ),
    types.Tool(
        name="transfer",
        description="Move money.",
        input_schema=_schema(amount="number", currency="string", country="string", iban="string"),
    ),
    types.Tool(
        name="run_shell", description="Run a shell command.", input_schema=_schema(cmd="string")
    ),
]


def build(record: Path) -> Server[Any]:
    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=TOOLS)

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        entry = {"tool": params.name, "arguments": params.arguments}
        with record.open("a", encoding="utf-8") as out:
            out.write(json.dumps(entry, sort_keys=True) + "\n")
        return types.CallToolResult(
            content=[types.TextContent(text=f"done: {params.name}")],
            structured_content={"received": params.arguments},
        )

    return Server("recording-upstream", on_list_tools=list_tools, on_call_tool=call_tool)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--record", required=True)
    parser.add_argument("--http", type=int, default=None, metavar="PORT")
    args = parser.parse_args()
    server = build(Path(args.record))
    if args.http is None:
        from mcp.server.stdio import stdio_server

        async def serve() -> None:
            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())

        anyio.run(serve)
    else:
        import uvicorn

        uvicorn.run(
            server.streamable_http_app(), host="127.0.0.1", port=args.http, log_level="warning"
        )


if __name__ == "__main__":
    main()
