"""PyInstaller run-time hook of the plugin: the packages it defers become importable.

binaries.spec collects them (ctypes) into _internal/deferred/, off the bootstrap's
sys.path, so that PyInstaller's bootstrap does not import them at every start. This
hook runs right after the bootstrap and appends that directory: a command that needs
ctypes imports it as usual, when it runs.
"""

import os
import sys

sys.path.append(os.path.join(sys._MEIPASS, "deferred"))  # type: ignore[attr-defined]
