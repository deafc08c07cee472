"""PyInstaller run-time hook: the programs we start see the caller's LD_LIBRARY_PATH.

The bootloader puts the bundle's _internal/ first in LD_LIBRARY_PATH (keeping the old
value in LD_LIBRARY_PATH_ORIG) and restarts itself, so the dynamic loader of this
process has read it already. Children such as iptables-restore must load the host's
libraries, not the bundle's copies of libz, libcrypto or libstdc++.
"""

import os

_original = os.environ.pop("LD_LIBRARY_PATH_ORIG", None)
if _original is None:
    os.environ.pop("LD_LIBRARY_PATH", None)
else:
    os.environ["LD_LIBRARY_PATH"] = _original
