"""Recipe: all-MiniLM-L6-v2 (text). It ships inside the package (sealkit/recipes/minilm.py), so `sealkit demo`
works after `pip install`; this file keeps `sealkit export export/minilm.py` working from a checkout."""

from sealkit.recipes.minilm import *  # noqa: F401,F403
from sealkit.recipes.minilm import recipe  # noqa: F401
