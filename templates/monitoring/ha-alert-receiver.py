#!/usr/bin/python3
"""The lab's alert receiver: records every Alertmanager webhook call, one JSON line each.

Lab only (alert_receiver_lab): tests read /var/lib/ha-alert-receiver/alerts.jsonl to see
alerts arrive and resolve. Standard library only.
"""
import http.server
import json

LOG = "/var/lib/ha-alert-receiver/alerts.jsonl"


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(LOG, "a") as log:
            log.write(json.dumps(json.loads(body)) + "\n")
        self.send_response(200)
        self.end_headers()


http.server.ThreadingHTTPServer(("127.0.0.1", 9099), Receiver).serve_forever()
