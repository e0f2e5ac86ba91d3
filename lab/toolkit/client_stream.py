"""A paced, bounded request stream; runs inside the lab's `client` host (python3, stdlib only).

    docker exec -i client python3 - URL [options] < lab/toolkit/client_stream.py

Sends one request every 1/rate s (each on a new HTTPS connection, like independent users),
verified against the stack's CA, until --seconds have passed, --count requests were sent or the
stop file appears. Prints one JSON line per finished request as it finishes:
{"start", "end", "status" (a number, or the error's name), "served_by", "id", "written_to"};
times are wall-clock seconds (every lab host shares the machine's clock).
"""

import argparse
import http.client
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--rate", type=float, default=50.0, help="requests per second")
    p.add_argument("--seconds", type=float, default=60.0, help="upper bound on the duration")
    p.add_argument("--method", choices=["GET", "POST"], default="GET")
    p.add_argument("--tag", default="stream", help="POST: note text prefix, <tag>-<n>")
    p.add_argument("--ca", required=True)
    p.add_argument("--stop-file", required=True)
    p.add_argument("--timeout", type=float, default=10.0, help="per request")
    return p.parse_args()


def one_request(args, context, n: int) -> dict:
    url = urllib.parse.urlsplit(args.url)
    body, headers = None, {}
    if args.method == "POST":
        body = json.dumps({"text": f"{args.tag}-{n}"})
        headers = {"Content-Type": "application/json"}
    record = {"start": time.time(), "served_by": "", "id": None, "written_to": None}
    try:
        conn = http.client.HTTPSConnection(url.hostname, url.port or 443, context=context,
                                           timeout=args.timeout)
        conn.request(args.method, url.path or "/", body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        record.update(status=resp.status, served_by=resp.getheader("X-Served-By", ""))
        if args.method == "POST" and resp.status == 201:
            note = json.loads(data)
            record.update(id=note.get("id"), written_to=note.get("written_to"))
    except (OSError, http.client.HTTPException, ValueError) as e:
        record["status"] = type(e).__name__
    record["end"] = time.time()
    return record


def main():
    args = parse_args()
    context = ssl.create_default_context(cafile=args.ca)
    if os.path.exists(args.stop_file):
        os.unlink(args.stop_file)
    lock = threading.Lock()

    def run(n):
        line = json.dumps(one_request(args, context, n))
        with lock:
            print(line, flush=True)

    # Enough workers that a stalled server does not slow the pace for the others.
    with ThreadPoolExecutor(max_workers=64) as pool:
        t0 = time.monotonic()
        for n in range(int(args.rate * args.seconds)):
            time.sleep(max(0.0, t0 + n / args.rate - time.monotonic()))
            if os.path.exists(args.stop_file):
                break
            pool.submit(run, n)


if __name__ == "__main__":
    sys.exit(main())
