"""build/Containerfile cannot be built here (no container engine): check what it copies."""

from __future__ import annotations

from pathlib import Path

BUILD = Path(__file__).resolve().parents[2] / "build"


def instructions() -> list[list[str]]:
    lines = (BUILD / "Containerfile").read_text().replace("\\\n", " ").splitlines()
    return [line.split() for line in lines if line.strip() and not line.startswith("#")]


def test_the_image_copies_the_bundles_and_the_installer_and_the_context_sends_them() -> None:
    copies = {words[-2].rstrip("/"): words[-1] for words in instructions()
              if words[0] == "COPY"}
    assert copies == {"dist/pyflannel": "/opt/pyflannel/cni/",
                      "dist/flanneld": "/opt/pyflannel/flanneld/",
                      "install-cni": "/opt/pyflannel/install-cni"}
    assert (BUILD / "install-cni").is_file()
    ignore = (BUILD / ".dockerignore").read_text().splitlines()
    assert "*" in ignore
    assert {line[1:] for line in ignore if line.startswith("!")} == copies.keys()


def test_flanneld_is_the_entrypoint_on_the_path() -> None:
    assert ["RUN", "ln", "-s", "/opt/pyflannel/flanneld/flanneld",
            "/usr/local/bin/flanneld"] in instructions()
    assert ["ENTRYPOINT", '["/usr/local/bin/flanneld"]'] in instructions()
