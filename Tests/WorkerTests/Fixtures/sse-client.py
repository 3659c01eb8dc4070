#!/usr/bin/env python3
"""A minimal Server-Sent Events client for the job API tests.

  sse-client.py URL TOKEN LAST_EVENT_ID MAX_EVENTS [QUIET_SECONDS]

Prints one JSON object a line for each event received ({"id", "event", "data"}), then
"END" when the server closed the stream, or "STOP" after MAX_EVENTS (0: no limit) events,
when it hangs up itself, or "OPEN" when the stream stayed open and said nothing for
QUIET_SECONDS (when given). The first line is "STATUS <code>".
"""
import socket
import http.client
import json
import sys
import urllib.parse

url, token, last, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
quiet = float(sys.argv[5]) if len(sys.argv) > 5 else None
parts = urllib.parse.urlsplit(url)
connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=quiet or 30)
headers = {"Accept": "text/event-stream"}
if token:
    headers["Authorization"] = f"Bearer {token}"
if last:
    headers["Last-Event-ID"] = last
connection.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers)
response = connection.getresponse()
print(f"STATUS {response.status}", flush=True)
if response.status != 200:
    print(response.read().decode(), flush=True)
    sys.exit(0)
count = 0
event = {}
while True:
    try:
        line = response.readline()
    except (socket.timeout, TimeoutError):
        if quiet is None:
            raise
        print("OPEN", flush=True)
        break
    if not line:
        print("END", flush=True)
        break
    line = line.decode().rstrip("\n")
    if line == "":
        if "data" in event:
            print(json.dumps(event), flush=True)
            count += 1
            if limit and count >= limit:
                print("STOP", flush=True)
                break
        event = {}
    elif line.startswith(":"):
        continue
    else:
        key, _, value = line.partition(": ")
        if key in ("id", "event", "data"):
            event[key] = value
connection.close()
