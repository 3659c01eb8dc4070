#!/usr/bin/env python3
"""A TCP proxy to PostgreSQL that can freeze one connection: it then forwards nothing more in
either direction and keeps both sockets open, as a NAT or a load balancer that dropped the flow
does (no reset ever reaches either end).

  freezing-proxy.py UPSTREAM_HOST UPSTREAM_PORT

Prints "<proxy port> <control port>" on its first line. A line "freeze PORT" sent to the control
port freezes the connection whose upstream side has local port PORT (PostgreSQL's
pg_stat_activity.client_port) and answers "frozen" or "unknown". A line "drop PORT" resets that
connection's client side only (the server goes on, and what it answers is lost), answering
"dropped" or "unknown".
"""
import asyncio
import sys

UPSTREAM_HOST, UPSTREAM_PORT = sys.argv[1], int(sys.argv[2])
frozen_ports = set()
by_port = {}
clients = {}


async def pipe(reader, writer, port):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if port in frozen_ports:
                await asyncio.Event().wait()  # never forwards again, never closes
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        if port not in frozen_ports:
            writer.close()


async def client(reader, writer):
    try:
        up_reader, up_writer = await asyncio.open_connection(UPSTREAM_HOST, UPSTREAM_PORT)
    except OSError:
        writer.close()
        return
    port = up_writer.get_extra_info("sockname")[1]
    by_port[port] = True
    clients[port] = writer
    await asyncio.gather(pipe(reader, up_writer, port), pipe(up_reader, writer, port))


async def control(reader, writer):
    line = (await reader.readline()).decode().split()
    if len(line) == 2 and line[0] == "freeze" and int(line[1]) in by_port:
        frozen_ports.add(int(line[1]))
        writer.write(b"frozen\n")
    elif len(line) == 2 and line[0] == "drop" and int(line[1]) in clients:
        frozen_ports.add(int(line[1]))  # nothing more forwarded to the client
        clients[int(line[1])].transport.abort()
        writer.write(b"dropped\n")
    else:
        writer.write(b"unknown\n")
    await writer.drain()
    writer.close()


async def main():
    proxy = await asyncio.start_server(client, "127.0.0.1", 0)
    controller = await asyncio.start_server(control, "127.0.0.1", 0)
    print(proxy.sockets[0].getsockname()[1], controller.sockets[0].getsockname()[1], flush=True)
    await asyncio.gather(proxy.serve_forever(), controller.serve_forever())


asyncio.run(main())
