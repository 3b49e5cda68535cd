"""sealkit: adapt a sealed foundation model to new tasks without access to its weights.

The top-level package stays light: importing it loads neither torch nor onnxruntime.
"""

__version__ = "0.1.0"
