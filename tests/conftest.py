"""Shared test fixtures. Tests never touch the network."""

from __future__ import annotations

import os

import pytest
import smoke_run
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)

# A small open_clip config, registered under its own name: random weights of it, saved in
# each checkpoint format, go through the same open_clip code path real weights take.
SMALL_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
}
SMALL_NAME = "test-small-clip"


@pytest.fixture(scope="session")
def small_clip_name(tmp_path_factory) -> str:
    """Register SMALL_CONFIG with open_clip and return its model name."""
    import json

    import open_clip

    if SMALL_NAME not in open_clip.list_models():
        path = tmp_path_factory.mktemp("configs") / f"{SMALL_NAME}.json"
        path.write_text(json.dumps(SMALL_CONFIG))
        open_clip.add_model_config(path)
    return SMALL_NAME


def pytest_collection_modifyitems(config, items):
    """nbval runs the translations as a smoke run (tests/smoke_run.py). The longest files run
    first: files with a test marked slow, then notebooks, then the rest. `make test` runs
    xdist with --dist loadfile --no-loadscope-reorder, which hands out files in this order, so
    that no long file starts last while the other worker waits."""
    for item in items:
        if hasattr(item, "cell") and smoke_run.applies(item.path):
            source = smoke_run.smoke_source(item.cell)
            if source is None:
                item.add_marker(pytest.mark.skip(reason=smoke_run.SKIP_REASON))
            else:
                item.cell.source = source
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: 0 if item.path in slow else 1 if item.path.suffix == ".ipynb" else 2)
