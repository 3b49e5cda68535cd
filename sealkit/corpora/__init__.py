"""Real corpora shipped by installed packages, registered as named datasets (see packaged.py).

Outside the core data package on purpose: the core reads paths; names come from entry points.
"""
