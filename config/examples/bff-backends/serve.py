#!/usr/bin/env python3
"""Example backends for config/examples/bff.toml (see docs/composition.md).

Four small JSON services on 127.0.0.1, answering from the files beside this script:

  users    :9101  GET /users/{id}              -> user-{id}.json
  orders   :9102  GET /orders?user={id}&...    -> orders-{id}.json
  catalog  :9103  GET /products?ids=a,b,...    -> the listed products of products.json,
                                                  in the catalog's own order
  reco     :9104  GET /reco?tier={t}&n={n}     -> the first n entries of reco-{t}.json

Anything else is 404. Run `python3 serve.py`, then ringgate with the example config.
"""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))


def load(name):
    path = os.path.join(HERE, name)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def users(path, query):
    parts = path.split("/")
    if len(parts) == 3 and parts[1] == "users":
        return load(f"user-{parts[2]}.json")
    return None


def orders(path, query):
    if path == "/orders" and "user" in query:
        return load(f"orders-{query['user'][0]}.json")
    return None


def catalog(path, query):
    if path != "/products" or "ids" not in query:
        return None
    wanted = set(query["ids"][0].split(","))
    return [p for p in load("products.json") if p["id"] in wanted]


def reco(path, query):
    if path != "/reco" or "tier" not in query:
        return None
    found = load(f"reco-{query['tier'][0]}.json") or []
    return found[: int(query.get("n", ["10"])[0])]


def handler_for(answer):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            url = urlsplit(self.path)
            value = answer(url.path, parse_qs(url.query))
            body = json.dumps(value).encode() if value is not None else b'{"error": "not found"}'
            self.send_response(200 if value is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


def main():
    services = [(9101, users), (9102, orders), (9103, catalog), (9104, reco)]
    servers = [ThreadingHTTPServer(("127.0.0.1", port), handler_for(f)) for port, f in services]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("example backends on 127.0.0.1:9101-9104")
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
