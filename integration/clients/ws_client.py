# WebSocket client for integration/record.sh websocket (`websockets`, PyPI): text and binary
# messages, a fragmented message, a ping, a 100 kB message, a normal close; a compressed
# connection; a server-side error close.
import asyncio
import sys

from websockets.asyncio.client import connect


async def main(addr):
    async with connect(f"ws://{addr}:8765/chat", compression=None) as ws:
        await ws.send("hello")
        await ws.recv()
        await ws.send(b"\x00\x01\x02binary")
        await ws.recv()
        await ws.send(["frag", "mented ", "text"])  # three frames, one message
        await ws.recv()
        pong = await ws.ping(b"are you there")
        await pong
        await ws.send("x" * 100_000)
        await ws.recv()
        await ws.send("bye")
        try:
            await ws.recv()
        except Exception:
            pass
    async with connect(f"ws://{addr}:8766/chat") as ws:  # permessage-deflate
        await ws.send("compress me " * 50)
        await ws.recv()
    async with connect(f"ws://{addr}:8765/chat", compression=None) as ws:
        await ws.send("fail")
        try:
            await ws.recv()
        except Exception:
            pass


asyncio.run(main(sys.argv[1]))
