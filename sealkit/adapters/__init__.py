"""The adapter, without torch: its configuration, task, tensor layout, numpy maths and file format.

    config.py      AdapterConfig (method, sizes) and TaskSpec (towers, fields, head, classes)
    layout.py      the tensor names and shapes an adapter has on a given seal
    functional.py  the adapters' forward maths in numpy (the deployed runtime uses it)
    file.py        the .adapter file: safetensors plus JSON metadata, bound to one seal

The torch modules that train these tensors live in sealkit/train. This package never imports
torch, onnxruntime or any sealkit package above sealkit.seal.
"""
