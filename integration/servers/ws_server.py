# WebSocket echo server for integration/record.sh websocket: the `websockets` package (PyPI).
# Port 8765 without compression, 8766 with permessage-deflate. It echoes every message; a
# message "bye" makes it close with 1000, "fail" with 1011 (internal error).
import asyncio
import sys

from websockets.asyncio.server import serve


async def echo(ws):
    async for message in ws:
        if message == "bye":
            await ws.close(1000, "done")
            return
        if message == "fail":
            await ws.close(1011, "boom")
            return
        await ws.send(message)


async def main(addr):
    async with serve(echo, addr, 8765, compression=None), serve(echo, addr, 8766):
        print("ready", flush=True)
        await asyncio.get_running_loop().create_future()


asyncio.run(main(sys.argv[1]))
