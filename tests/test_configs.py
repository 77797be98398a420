"""Every training recipe in configs/ is a valid config: a typo there would otherwise only show
when a run starts, on the machine that trains it (often a GPU with minutes to spend)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from wildfer.models.loader import load_model
from wildfer.models.registry import create_model, list_models
from wildfer.train.config import load_config

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "configs").glob("*.yaml"))


def test_the_recipes_are_found():
    names = {p.stem for p in RECIPES}
    assert {"default", "default_resnet", "fast", "ferplus", "shallow", "fast_kd"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads_and_builds_its_model(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # recipes name files relative to the repo root
    cfg = load_config(path)  # unknown keys and bad values are errors here
    assert cfg.model in list_models()
    net = create_model(cfg.model, num_classes=8 if cfg.dataset == "ferplus" else 7, **(cfg.model_kwargs or {}))
    side, chans = cfg.face_side(), 3 if cfg.colour else 1  # the faces the recipe trains on
    with torch.no_grad():
        assert net.eval()(torch.zeros(2, chans, side, side)).shape[0] == 2
    if cfg.teacher and cfg.teacher.endswith(".json"):  # a teacher spec must load offline
        teacher = load_model(cfg.teacher)
        assert list(teacher.labels)[:7] == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
