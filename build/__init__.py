"""Building the shipped executables (PyInstaller) and the DaemonSet image: build/README.md."""
