"""Serving many tasks from one sealed backbone: torch-free, onnxruntime + numpy.

    registry.py  tasks = adapter files on one Seal; load/unload/reload/scan; other seals refused
    batcher.py   micro-batches backbone calls across requests and tasks (bounded wait and size)
    service.py   per request: prepare (input adapter) -> batched backbone -> finish (output, head, index)
    app.py       the FastAPI app of `sealkit serve` (needs the `serve` extra)
    server.py    Deployment (seal + registry + batcher + folder watcher) and the uvicorn runners
    ray_app.py   `serve --engine ray`: the same app on Ray Serve, backbone replicas batching across tasks

Importing this package imports nothing. registry.py and batcher.py need only the core install;
service.py, app.py and server.py need the `serve` extra (FastAPI/Starlette, uvicorn); ray_app.py
the `ray` extra.
"""
