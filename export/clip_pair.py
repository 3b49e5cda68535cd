"""Recipe: EfficientNet-Lite0 + all-MiniLM-L6-v2 (an image-text pair). It ships inside the package (sealkit/recipes/clip_pair.py), so `sealkit demo`
works after `pip install`; this file keeps `sealkit export export/clip_pair.py` working from a checkout."""

from sealkit.recipes.clip_pair import *  # noqa: F401,F403
from sealkit.recipes.clip_pair import recipe  # noqa: F401
