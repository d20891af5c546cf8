"""The Qt-free state the napari layer talks to: evented status records and viewport geometry."""

from __future__ import annotations

import sys

from scribble_unet.state import ExportState, TrainingState, WorkflowState
from scribble_unet.state.viewport import (
    n_levels,
    visible_region,
    window_box,
    window_origin,
    window_to_follow,
    worth_predicting,
)


def test_status_records_emit_each_change_and_import_no_qt() -> None:
    state = WorkflowState()
    seen: list[object] = []
    state.training.events.state.connect(seen.append)
    state.training.events.step.connect(seen.append)
    state.training.state = TrainingState.RUNNING
    for step in (1, 2, 2, 3):  # an unchanged value emits nothing
        state.training.step = step
    state.training.state = TrainingState.IDLE
    assert seen == [TrainingState.RUNNING, 1, 2, 3, TrainingState.IDLE]
    assert state.export.state is ExportState.IDLE and ExportState.DONE.value == "done"
    assert not {"napari", "qtpy", "PyQt6"} & {m.split(".")[0] for m in sys.modules if "scribble_unet.state" in m}


def test_visible_region_in_image_pixels() -> None:
    # canvas 20 x 40 screen px at zoom 1 around (50, 50): rows 40..60, columns 30..70
    assert visible_region((50, 50), 1.0, (20, 40), (1.0, 1.0), (0.0, 0.0), (100, 100)) == (40, 60, 30, 70)
    # scale 2 and an offset: world (50, 50) is pixel (20, 15)
    assert visible_region((50, 50), 1.0, (20, 40), (2.0, 2.0), (10.0, 20.0), (100, 100)) == (15, 25, 5, 25)
    # clipped at the image, None when the view is off the image
    assert visible_region((0, 0), 1.0, (20, 40), (1.0, 1.0), (0.0, 0.0), (100, 100)) == (0, 10, 0, 20)
    assert visible_region((500, 500), 1.0, (20, 40), (1.0, 1.0), (0.0, 0.0), (100, 100)) is None
    # no canvas size yet: 1080 x 1920 assumed
    assert visible_region((5000, 5000), 1.0, None, (1.0, 1.0), (0.0, 0.0), (10**4, 10**4)) == (4460, 5540, 4040, 5960)


def test_scribble_window_follows_the_view_on_its_grid() -> None:
    shape = (65536, 65536)
    origin = window_origin((40000, 30000), shape)
    assert origin == (37888, 27648) and origin[0] % 512 == 0 and origin[1] % 512 == 0
    assert window_origin((100, 65500), shape) == (0, 65536 - 4096)
    box = window_box(origin, shape)
    assert box == (37888, 37888 + 4096, 27648, 27648 + 4096)
    assert window_box((0, 0), (1000, 5000)) == (0, 1000, 0, 4096)
    # a view inside the window: stay; a small view elsewhere: move there; a huge view: stay
    assert window_to_follow(box, (39000, 40000, 29000, 30000), shape) is None
    assert window_to_follow(box, (60000, 60500, 2000, 6000), shape) == window_origin((60250, 4000), shape)
    assert window_to_follow(box, (0, 65536, 0, 65536), shape) is None


def test_display_levels_and_live_budget() -> None:
    assert [n_levels((s, s)) for s in (512, 2048, 2049, 16384, 65536)] == [1, 1, 2, 4, 6]
    assert worth_predicting((0, 2048, 0, 2048), tile=256) and not worth_predicting((0, 2049, 0, 2048), tile=256)
