"""The project record: class names, model versions (nothing overwritten) and the training history."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from scribble_unet.scribbles.project import KEEP_MODELS, Project
from scribble_unet.state.history import TrainingHistory


def test_every_run_gets_a_new_model_file_and_only_the_last_versions_are_kept(tmp_path) -> None:
    project = Project.open(tmp_path / "p")
    assert project.is_new
    legacy = project.models_dir / "model.safetensors"  # a model from before versions were kept
    legacy.write_bytes(b"old")
    t0 = datetime(2025, 3, 1, 14, 32)
    paths = []
    for i in range(KEEP_MODELS + 2):
        path = project.new_model_path(t0 + timedelta(minutes=i))
        assert not path.exists()
        path.write_bytes(b"m")
        project.record_model(path, steps=10 * (i + 1), saved=t0 + timedelta(minutes=i))
        paths.append(path)
    assert project.model == "models/" + paths[-1].name
    assert [p.exists() for p in paths] == [False, False] + [True] * KEEP_MODELS
    assert legacy.read_bytes() == b"old"  # not the project's version: never deleted
    # same second twice: a second file, not the first one again
    a = project.new_model_path(t0)
    a.write_bytes(b"x")
    assert project.new_model_path(t0) != a


def test_project_json_round_trip_restores_classes_versions_settings_and_history(tmp_path) -> None:
    project = Project.open(tmp_path)
    project.class_names = ["nucleus"]
    path = project.new_model_path(datetime(2025, 3, 1, 9, 5))
    path.write_bytes(b"m")
    version = project.record_model(path, steps=88, saved=datetime(2025, 3, 1, 9, 5))
    assert version.label == "saved 1 Mar 09:05, 88 steps"
    history = TrainingHistory()
    history.start_run("2025-03-01T09:04:00", None)
    for s in range(1, 89):
        history.add_loss(s, 1.0 / s)
    history.add_iou(50, 0.8)
    history.end_step(88, 88, 60.0, version.file)
    project.history = history.to_json()
    project.run_config = {"train": {"time_budget": 60.0}}
    project.save()
    again = Project.open(tmp_path)
    assert not again.is_new and again.class_names == ["nucleus"] and again.models == [version]
    assert again.latest_checkpoint() == path and again.run_config == {"train": {"time_budget": 60.0}}
    restored = TrainingHistory.from_json(again.history)
    assert restored.steps == 88 and len(restored.loss) == 88 and restored.iou == [(50, 0.8)]
    # a continued run keeps the curve; a fresh one clears it
    restored.start_run("x", version.file)
    assert len(restored.loss) == 88
    restored.start_run("y", None)
    assert restored.loss == [] and restored.steps == 0


def test_versions_that_leave_the_project_are_dropped(tmp_path) -> None:
    meta = {"class_names": ["a"], "model": None, "models": [
        {"file": "../outside.safetensors", "saved": "2025-01-01T00:00:00", "steps": 3},
        {"file": "models/m.safetensors", "saved": "2025-01-01T00:00:00", "steps": "3"},
        {"file": "models/ok.safetensors", "saved": "2025-01-01T00:00:00", "steps": 3}],
        "history": [1, 2], "run_config": "x"}
    (tmp_path / "project.json").write_text(json.dumps(meta))
    project = Project.open(tmp_path)
    assert [v.file for v in project.models] == ["models/ok.safetensors"]
    assert project.history == {} and project.run_config == {}
