"""A real WebSocket client (the python websockets library): connects through meshd's outbound
listener with Host naming the service, sends each argument as a text message and prints each
echo on its own line. Usage: ws-client.py HOST:PORT SERVICE MESSAGE..."""
import asyncio, socket, sys

import websockets


async def main():
    host, port = sys.argv[1].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    async with websockets.connect(f"ws://{sys.argv[2]}/ws", sock=sock, open_timeout=10) as ws:
        for text in sys.argv[3:]:
            await ws.send(text)
            print(await asyncio.wait_for(ws.recv(), 10), flush=True)


asyncio.run(main())
