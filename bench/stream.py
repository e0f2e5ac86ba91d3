"""A paced, bounded request stream; runs inside the `client` container (python3, stdlib only).

    docker exec -i client python3 - URL [options] < bench/stream.py

Sends one request every 1/rate s (each on a new HTTPS connection, like independent users),
verified against the lab CA, until --seconds have passed or the stop file appears. Prints one
JSON document: a record per request [start, end, status or error name, X-Served-By, note id],
times in wall-clock seconds (every lab container shares the machine's clock).
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
    p.add_argument("--tag", default="bench", help="POST: note text prefix, <tag>-<n>")
    p.add_argument("--ca", default="/tmp/ha-webstack-lab-ca.crt")
    p.add_argument("--stop-file", default="/tmp/ha-webstack-stream.stop")
    p.add_argument("--timeout", type=float, default=10.0, help="per request")
    return p.parse_args()


def one_request(args, context, n: int) -> list:
    url = urllib.parse.urlsplit(args.url)
    body, headers = None, {}
    if args.method == "POST":
        body = json.dumps({"text": f"{args.tag}-{n}"})
        headers = {"Content-Type": "application/json"}
    start = time.time()
    try:
        conn = http.client.HTTPSConnection(url.hostname, url.port or 443, context=context,
                                           timeout=args.timeout)
        conn.request(args.method, url.path or "/", body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        note_id = None
        if args.method == "POST" and resp.status == 201:
            note_id = json.loads(data).get("id")
        return [start, time.time(), resp.status, resp.getheader("X-Served-By", ""), note_id]
    except (OSError, http.client.HTTPException, ValueError) as e:
        return [start, time.time(), type(e).__name__, "", None]


def main():
    args = parse_args()
    context = ssl.create_default_context(cafile=args.ca)
    if os.path.exists(args.stop_file):
        os.unlink(args.stop_file)
    records, lock = [], threading.Lock()
    max_requests = int(args.rate * args.seconds)

    def run(n):
        record = one_request(args, context, n)
        with lock:
            records.append(record)

    # Enough workers that a stalled server does not slow the pace for the others.
    with ThreadPoolExecutor(max_workers=64) as pool:
        t0 = time.monotonic()
        for n in range(max_requests):
            due = t0 + n / args.rate
            time.sleep(max(0.0, due - time.monotonic()))
            if os.path.exists(args.stop_file):
                break
            pool.submit(run, n)
    records.sort(key=lambda r: r[0])
    json.dump({"url": args.url, "method": args.method, "rate": args.rate, "records": records},
              sys.stdout)


if __name__ == "__main__":
    main()
