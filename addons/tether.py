"""tether's addon chain for a stock mitmproxy: `mitmdump -s addons/tether.py --set tether_config=tether.yaml`.

Without `tether_config`, the embedded defaults and TETHER_* environment variables apply.
"""

import os
import sys

# mitmproxy puts this script's folder first on sys.path while loading it, where this file would
# shadow the `tether` package it loads; look the package up without that folder.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
if sys.modules.get("tether") is not None and not hasattr(sys.modules["tether"], "__path__"):
    del sys.modules["tether"]

from tether.proxy.chain import addon_chain  # noqa: E402
from tether.proxy.holder import Holder  # noqa: E402

addons = addon_chain(Holder())
