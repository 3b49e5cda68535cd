"""Call a running `sealkit serve` over HTTP with the standard library only (any HTTP client works).

    python examples/05_http_client.py --url http://127.0.0.1:8080 --image examples/data/colours/red/0.png

The schema is at URL/docs (Swagger UI, served locally) and URL/openapi.json; metrics at URL/metrics.
"""

from __future__ import annotations

import argparse
import base64
import json
import urllib.request
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--url", default="http://127.0.0.1:8080")
parser.add_argument("--image", type=Path, default=Path(__file__).with_name("data") / "colours" / "red" / "0.png")
args = parser.parse_args()


def call(method: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(args.url + path, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:  # errors raise HTTPError; the body is JSON {"error": ...}
        return json.loads(response.read())


health = call("GET", "/health")
print("health:", health["status"], "providers", health["providers"], "tasks", health["tasks"])
for task in call("GET", "/tasks")["tasks"]:
    print(f"task {task['name']}: {task['task']} ({task['method']}), classes {task.get('classes')}")

# Texts go as JSON; images as base64 strings (or multipart files).
reviews = call("POST", "/tasks/reviews/classify", {"texts": ["a great fun film", "an awful boring plot"], "top_k": 2})
for text, result in zip(["a great fun film", "an awful boring plot"], reviews["results"]):
    print(f"{text!r}: {result['predictions'][0]['label']} ({result['predictions'][0]['probability']:.2f})")
image = base64.b64encode(args.image.read_bytes()).decode()
colour = call("POST", "/tasks/colours/classify", {"images": [image], "top_k": 1})
print(f"{args.image.name}: {colour['results'][0]['predictions'][0]['label']}")

# Embeddings (e.g. for your own vector store) and the metrics Prometheus would scrape.
embedding = call("POST", "/tasks/reviews/embed", {"texts": ["a good movie"]})
print(f"embedding: {embedding['dim']} dims")
with urllib.request.urlopen(args.url + "/metrics", timeout=30) as response:
    lines = [line for line in response.read().decode().splitlines() if line.startswith("sealkit_requests_total")]
print("\n".join(lines))
