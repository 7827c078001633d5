from __future__ import annotations

import numpy as np

from edge.video.tracker import Tracker
from tests.edge.video.factories import dets


def run(tracker, frames, dt=0.2):
    return [tracker.update(d, i * dt) for i, d in enumerate(frames)]


def test_empty_input_gives_empty_output():
    t = Tracker()
    for i in range(3):
        out = t.update(dets(), i * 0.2)
        assert len(out) == 0 and out.tracker_id.shape == (0,)
    assert t.active == 0


def test_a_track_is_confirmed_on_its_second_sighting_and_keeps_its_id():
    t = Tracker(min_hits=2)
    first = t.update(dets(("car", 10, 10, 60, 40)), 0.0)
    assert len(first) == 0 and t.tentative == 1
    outs = run(t, [dets(("car", 10 + 3 * i, 10, 60 + 3 * i, 40)) for i in range(5)])
    assert t.tentative == 0
    ids = {int(o.tracker_id[0]) for o in outs[1:]}
    assert len(ids) == 1 and min(ids) >= 1


def test_two_objects_get_two_ids_and_do_not_swap():
    t = Tracker()
    frames = [
        dets(
            ("person", 10 + 5 * i, 10, 30 + 5 * i, 60), ("person", 200 - 5 * i, 10, 220 - 5 * i, 60)
        )
        for i in range(6)
    ]
    outs = run(t, frames)
    first = {
        int(tid): float(x) for tid, x in zip(outs[1].tracker_id, outs[1].xyxy[:, 0], strict=True)
    }
    last = {
        int(tid): float(x) for tid, x in zip(outs[-1].tracker_id, outs[-1].xyxy[:, 0], strict=True)
    }
    assert set(first) == set(last) and len(first) == 2
    left = min(first, key=first.__getitem__)
    assert last[left] < 100  # the left walker is still the one on the left


def test_class_is_a_running_vote_so_label_flicker_keeps_one_track():
    t = Tracker()
    labels = ["truck", "car", "truck", "truck", "car"]
    outs = run(t, [dets((lab, 640, 40, 725, 100, 0.5)) for lab in labels])
    assert len({int(o.tracker_id[0]) for o in outs[1:]}) == 1
    assert outs[-1].names == ["truck"]


def test_low_score_detection_keeps_a_track_alive_but_does_not_start_one():
    t = Tracker(high_threshold=0.5, new_track_threshold=0.5)
    outs = run(
        t,
        [
            dets(("car", 10, 10, 50, 50, 0.9)),
            dets(("car", 10, 10, 50, 50, 0.9)),
            dets(("car", 11, 10, 51, 50, 0.2), ("dog", 300, 300, 320, 320, 0.3)),
        ],
    )
    assert outs[2].names == ["car"] and outs[2].tracker_id[0] == outs[1].tracker_id[0]
    assert t.active == 1  # the weak dog started nothing


def test_tracks_expire_after_max_age_in_video_seconds():
    t = Tracker(max_age_s=1.0)
    t.update(dets(("car", 10, 10, 50, 50)), 0.0)
    first = t.update(dets(("car", 10, 10, 50, 50)), 0.2)
    t.update(dets(), 0.9)
    kept = t.update(dets(("car", 10, 10, 50, 50)), 1.1)  # gap 0.9 s: same track
    assert kept.tracker_id.tolist() == first.tracker_id.tolist()
    t.update(dets(), 3.0)
    gone = t.update(dets(("car", 10, 10, 50, 50)), 3.1)  # gap 2 s: a new, unconfirmed track
    assert len(gone) == 0


def test_reset_forgets_tracks_but_never_reuses_ids():
    t = Tracker()
    run(t, [dets(("car", 10, 10, 50, 50))] * 2)
    t.reset()
    assert t.active == 0
    out = run(t, [dets(("car", 10, 10, 50, 50))] * 2)[-1]
    assert int(out.tracker_id[0]) == 2


def test_velocity_prediction_follows_a_fast_object():
    t = Tracker()
    # 40 px box at 15 px per update, then 25: without prediction IoU drops to 0.23
    xs = [15 * i for i in range(6)] + [75 + 25 * i for i in range(1, 4)]
    outs = run(t, [dets(("car", x, 0, x + 40, 40)) for x in xs])
    ids = [int(o.tracker_id[0]) for o in outs[1:] if len(o)]
    assert len(ids) == len(xs) - 1 and len(set(ids)) == 1
    assert np.all(outs[-1].xyxy[0] == [150, 0, 190, 40])
    no_motion_model = Tracker()
    no_motion_model.update(dets(("car", 0, 0, 40, 40)), 0.0)
    no_motion_model.update(dets(("car", 0, 0, 40, 40)), 0.2)
    jumped = no_motion_model.update(dets(("car", 25, 0, 65, 40)), 0.4)
    assert len(jumped) == 0  # a 25 px jump from standstill is a new object


def test_an_unconfirmed_track_that_misses_its_second_look_is_dropped():
    t = Tracker()
    t.update(dets(("dog", 10, 10, 50, 50)), 0.0)
    assert t.tentative == 1 and len(t.tentative_boxes()) == 1
    t.update(dets(), 0.2)
    assert t.active == 0 and t.tentative_boxes().shape == (0, 4)
    confirmed = Tracker()
    run(confirmed, [dets(("dog", 10, 10, 50, 50))] * 2)
    confirmed.update(dets(), 0.4)
    assert confirmed.active == 1  # a confirmed track survives a miss


def test_a_track_where_the_detector_did_not_look_is_held_not_missed():
    t = Tracker(max_age_s=1.0)
    t.update(dets(("car", 10, 10, 50, 50, 0.8)), 0.0)
    seen = t.update(dets(("car", 10, 10, 50, 50, 0.8)), 0.2)
    everywhere = lambda centres: np.zeros(len(centres), bool)  # noqa: E731
    elsewhere = lambda centres: np.ones(len(centres), bool)  # noqa: E731
    held = t.update(dets(), 0.4, unseen=elsewhere)
    assert held.tracker_id.tolist() == seen.tracker_id.tolist()
    assert held.xyxy.tolist() == seen.xyxy.tolist() and held.names == ["car"]
    assert len(t.update(dets(), 0.6, unseen=everywhere)) == 0  # looked there: missed, not shown
    # a held track still ages from when it was last seen: never seen again, it goes
    assert len(t.update(dets(), 1.3, unseen=elsewhere)) == 0


def test_a_held_track_is_matched_again_when_the_detector_looks_there():
    t = Tracker()
    t.update(dets(("car", 10, 10, 50, 50, 0.8)), 0.0)
    first = t.update(dets(("car", 10, 10, 50, 50, 0.8)), 0.2)
    t.update(dets(), 0.4, unseen=lambda centres: np.ones(len(centres), bool))
    again = t.update(dets(("car", 11, 10, 51, 50, 0.8)), 0.6)
    assert again.tracker_id.tolist() == first.tracker_id.tolist()


def test_a_track_looked_for_and_not_found_is_not_held_again():
    t = Tracker(max_age_s=5.0)
    t.update(dets(("person", 10, 10, 50, 90, 0.8)), 0.0)
    t.update(dets(("person", 10, 10, 50, 90, 0.8)), 0.2)
    elsewhere = lambda centres: np.ones(len(centres), bool)  # noqa: E731
    assert len(t.update(dets(), 0.4, unseen=elsewhere)) == 1  # not looked at: held
    assert len(t.update(dets(), 0.6)) == 0  # a full look: not there, missed
    assert len(t.update(dets(), 0.8, unseen=elsewhere)) == 0  # so no longer held
    back = t.update(dets(("person", 12, 10, 52, 90, 0.8)), 1.0)  # found again: the same track
    assert len(back) == 1 and len(t.update(dets(), 1.2, unseen=elsewhere)) == 1
