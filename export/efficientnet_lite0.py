"""Recipe: EfficientNet-Lite0 (images). It ships inside the package (sealkit/recipes/efficientnet_lite0.py), so `sealkit demo`
works after `pip install`; this file keeps `sealkit export export/efficientnet_lite0.py` working from a checkout."""

from sealkit.recipes.efficientnet_lite0 import *  # noqa: F401,F403
from sealkit.recipes.efficientnet_lite0 import recipe  # noqa: F401
