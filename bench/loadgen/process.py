"""One running mode of wsload driven line by line: commands on its stdin, answers on its
stdout (the `storm` and `churn` modes)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from bench.loadgen import build, header_lines


class Process:
    """A wsload process: started with its header lines, told commands, read one line each."""

    def __init__(self, mode: str, argv: list[str], headers: list[dict[str, str]]) -> None:
        self._mode = mode
        self._argv = argv
        self._headers = headers
        self._process: asyncio.subprocess.Process | None = None

    async def open(self, within: float) -> None:
        """Starts it and waits (up to `within` seconds) for its "ready"."""
        self._process = process = await asyncio.create_subprocess_exec(
            str(build()), self._mode, *self._argv,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stdin is not None
        process.stdin.write(header_lines(self._headers))
        await process.stdin.drain()
        await self.expect(b"ready\n", within)

    async def command(self, line: str) -> None:
        assert self._process is not None
        assert self._process.stdin is not None
        self._process.stdin.write(line.encode() + b"\n")
        await self._process.stdin.drain()

    async def line(self, within: float) -> bytes:
        assert self._process is not None
        assert self._process.stdout is not None
        line = await asyncio.wait_for(self._process.stdout.readline(), within)
        if not line:
            raise RuntimeError(f"wsload {self._mode} exited with {await self._process.wait()}")
        return line

    async def figures(self, within: float) -> dict[str, Any]:
        """Its next line, a JSON object."""
        result: dict[str, Any] = json.loads(await self.line(within))
        return result

    async def expect(self, answer: bytes, within: float) -> None:
        line = await self.line(within)
        if line != answer:
            raise RuntimeError(f"wsload {self._mode} answered {line!r}, not {answer!r}")

    async def close(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()
