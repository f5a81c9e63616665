"""The evaluator's numbers are right: known predictions through the same runner and scorers give known scores.

* A real `Session` on a scripted backend (tests/core/tasks/fake_backend.py): REC answers the referred object's box
  (accuracy 1.0, or exactly the share of expressions it answers right), detection answers every object with its
  class (box AP 1.0).
* Ground truth as prediction (an object with the Session methods the runner calls, answering the annotations of the
  frame it is shown): SOT, VOS, MOT, MOTS and VIS give their perfect scores, computed by hand below.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from uninext_core.data.synthetic.__main__ import main as synth_main
from uninext_core.eval.datasets import open_data, resolve_data
from uninext_core.eval.offline import evaluate_units
from uninext_core.eval.units import build_units, load_frame
from uninext_core.instances import Instances
from uninext_core.prompts import CategoryPrompt, ExpressionPrompt, TemplatePrompt, build_category_caption
from uninext_core.tasks.session import Session
from uninext_core.tasks.trackers import ClipInstance

MOT_CLASSES = "circle,square,triangle,star,hexagon,cross,heart,ring,ellipse,diamond"


def _load_fake():
    name = "uninext_test_fake_backend"
    if name not in sys.modules:
        path = Path(__file__).parents[1] / "tasks" / "fake_backend.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


fake = _load_fake()


def _synth(root: Path, task: str, *args: str) -> Path:
    out = root / task
    assert synth_main(["--out", str(out), "--task", task, "--seed", "3", *args]) == 0
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synth")
    size = ["--size", str(fake.SIZE)]
    return {
        "referring": _synth(root, "referring", "--num-images", "4", "--max-expressions", "1", *size),
        "detection": _synth(root, "detection", "--num-images", "4", *size),
        "sot": _synth(root, "sot", "--num-videos", "2", "--num-frames", "5", *size),
        "vos": _synth(root, "vos", "--num-videos", "2", "--num-frames", "5", *size),
        "mot": _synth(root, "mot", "--num-videos", "2", "--num-frames", "5", *size),
        "video": _synth(root, "video", "--num-videos", "2", "--num-frames", "5", *size),
        "vis": _synth(root, "vis", "--num-videos", "2", "--num-frames", "5", *size),
    }


def _units(path: Path, task: str, **options):
    store = open_data(resolve_data(path, task=task, **options))
    return store, build_units(store, task=task)


# ---------------------------------------------------------------------------------------- scripted backend


def test_rec_accuracy_from_a_scripted_backend_through_the_session(data) -> None:
    store, units = _units(data["referring"], "rec")
    gt_boxes = []
    for unit in units:
        _, truth = load_frame(store, unit, 0)
        gt_boxes.append(truth.boxes_xyxy_px[truth.index_of(unit.referent_ids[0])].tolist())
    wrong = set(range(1, len(units), 2))  # every second expression is answered with a box beside the object

    def respond(prompt, call_index):
        x1, y1, x2, y2 = gt_boxes[call_index]
        beside = [x2, y1, min(x2 + (x2 - x1), 64.0), y2] if x2 < 63 else [0.0, y1, max(x1 - 1, 1.0), y2]
        first, second = (beside, [x1, y1, x2, y2]) if call_index in wrong else ([x1, y1, x2, y2], beside)
        return fake.make_raw(boxes_xyxy=[first, second], pooled=[0.9, 0.2])

    backend = fake.FakeBackend()
    backend.respond = respond
    session = Session(backend, tokenizer=fake.tokenizer())
    evaluation = evaluate_units(session, store, units, task="rec")
    metrics = evaluation.scores.metrics
    assert len(units) >= 4 and metrics["expressions"] == len(units)
    assert metrics["accuracy"] == pytest.approx((len(units) - len(wrong)) / len(units))
    assert evaluation.frames == len(units) and evaluation.latency["frames"] == len(units)

    backend = fake.FakeBackend()  # call indices start again at 0
    backend.respond = lambda prompt, i: fake.make_raw(boxes_xyxy=[gt_boxes[i]], pooled=[0.9])
    session = Session(backend, tokenizer=fake.tokenizer())
    assert evaluate_units(session, store, units, task="rec").scores.metrics["accuracy"] == 1.0


def test_detection_box_ap_is_one_for_a_backend_answering_the_annotations(data) -> None:
    store, units = _units(data["detection"], "detection")
    names = [c.name for c in store.categories]
    caption = build_category_caption(names, fake.tokenizer(), max_tokens=fake.MAX_TOKENS)
    category_index = {c.id: k for k, c in enumerate(store.categories)}
    truths = [load_frame(store, unit, 0)[1] for unit in units]
    assert sum(len(t) for t in truths) >= 4

    def respond(prompt, call_index):
        truth = truths[call_index]
        boxes = [*truth.boxes_xyxy_px.tolist(), [0.0, 0.0, 4.0, 4.0]]  # a last, low-scoring distractor
        logits = np.full((len(boxes), fake.MAX_TOKENS), -10.0)
        for q, category_id in enumerate(truth.category_ids.tolist()):
            logits[q, list(caption.token_spans[category_index[category_id]])] = 10.0
        return fake.make_raw(boxes_xyxy=boxes, token_logits=logits)

    backend = fake.FakeBackend()
    backend.respond = respond
    session = Session(backend, tokenizer=fake.tokenizer())
    metrics = evaluate_units(session, store, units, task="detection").scores.metrics
    assert metrics["box_ap"] == pytest.approx(1.0) and metrics["box_ap50"] == pytest.approx(1.0)
    assert metrics["images"] == len(units)


# ---------------------------------------------------------------------------------- ground truth as answer


class GroundTruthSession:
    """Answers every frame with its annotations (looked up by the frame's bytes): the runner's Session calls."""

    def __init__(self, store, units) -> None:
        self._truths = {}
        self._referents: dict[tuple[str, str], int] = {}  # (frame digest, expression) -> referred instance
        self._class_of = {c.id: k for k, c in enumerate(store.categories)}
        for unit in units:
            for position in unit.frames:
                frame, truth = load_frame(store, unit, position)
                digest = hashlib.sha1(frame.tobytes()).hexdigest()
                self._truths[digest] = truth
                if isinstance(unit.prompt, ExpressionPrompt):
                    self._referents[(digest, unit.prompt.text)] = unit.referent_ids[0]
        self._prompt = None
        self._task = None
        self._tracks: dict[int, int] = {}

    def reset(self, *, clear_prompt: bool = False) -> None:
        self._tracks = {}
        if clear_prompt:
            self._prompt = None

    def set_prompt(self, prompt, *, task=None, prompt_id=None) -> int:
        self._prompt, self._task, self._tracks = prompt, task, {}
        return 1

    def clip_results(self) -> list[ClipInstance]:
        return [ClipInstance(track_id, label, 1.0, np.zeros(0, np.int64)) for track_id, label in self._tracks.items()]

    def process(self, frame: np.ndarray, stamp_ns: int) -> Instances:
        digest = hashlib.sha1(frame.tobytes()).hexdigest()
        truth = self._truths[digest]
        if self._prompt is None:
            return Instances.empty(stamp_ns=stamp_ns, image_size=truth.image_size, task="detection", prompt_id=0)
        keep = np.ones(len(truth), dtype=bool)
        if isinstance(self._prompt, TemplatePrompt):
            keep = np.isin(truth.ids, [t.object_id for t in self._prompt.targets])
        elif isinstance(self._prompt, ExpressionPrompt):
            keep = truth.ids == self._referents[(digest, self._prompt.text)]
        classes = np.array([self._class_of.get(int(c), 0) for c in truth.category_ids[keep]], dtype=np.int64)
        for track_id, label in zip(truth.ids[keep].tolist(), classes.tolist(), strict=True):
            self._tracks[track_id] = label
        masks = None if truth.masks is None else truth.masks[keep]
        return Instances(stamp_ns=stamp_ns, image_size=truth.image_size, task=self._task, prompt_id=1,
                         track_ids=truth.ids[keep], boxes_xyxy=truth.boxes_xyxy_px[keep].astype(np.float32),
                         scores=np.ones(int(keep.sum()), np.float32), class_indices=classes,
                         labels=[str(i) for i in truth.ids[keep]], masks=masks)


def _oracle(path: Path, task: str, **options):
    store, units = _units(path, task, **options)
    return evaluate_units(GroundTruthSession(store, units), store, units, task=task), store, units


def test_sot_scores_of_ground_truth_answers_match_the_hand_count(data) -> None:
    evaluation, store, units = _oracle(data["sot"], "sot")
    # IoU 1 exceeds the 20 thresholds below 1 and not 1.0 itself; frames without the target count as failures.
    visible = [store.sot[u.store_unit].visible[list(u.frames)] for u in units]
    visible = [np.concatenate([[True], v[1:]]) for v in visible]  # frame 0 is the initialisation frame
    metrics = evaluation.scores.metrics
    assert metrics["success_auc"] == pytest.approx(np.mean([v.mean() for v in visible]) * 20 / 21)
    assert metrics["precision_20px"] == pytest.approx(np.mean([v.mean() for v in visible]))
    assert evaluation.scores.curves["sot_success"]["y"][-1] == 0.0


def test_vos_jf_is_one_when_every_object_is_answered(data) -> None:
    store, units = _units(data["vos"], "vos")
    complete = [u for u in units if set(u.referent_ids) == set(store.vos[u.store_unit].objects)]
    assert complete, "no synthetic VOS sequence whose objects all show on its first frame"
    evaluation = evaluate_units(GroundTruthSession(store, complete), store, complete, task="vos")
    assert evaluation.scores.metrics["jf_mean"] == pytest.approx(1.0)
    assert evaluation.scores.metrics["j_recall"] == pytest.approx(1.0)


@pytest.mark.parametrize(("task", "name"), [("mot", "mot"), ("mots", "video")])
def test_mot_scores_of_ground_truth_answers_are_perfect(data, task: str, name: str) -> None:
    options = {"categories": tuple(MOT_CLASSES.split(","))} if name == "mot" else {}
    evaluation, _, units = _oracle(data[name], task, **options)
    metrics = evaluation.scores.metrics
    assert metrics["num_objects"] > 0 and metrics["sequences"] == len(units)
    for key in ("mota", "idf1", "hota", "deta", "assa", "motp_iou"):
        assert metrics[key] == pytest.approx(1.0), key
    assert metrics["num_switches"] == 0 and metrics["num_false_positives"] == 0


def test_vis_video_ap_of_ground_truth_clips_is_one(data) -> None:
    evaluation, _, units = _oracle(data["vis"], "vis")
    metrics = evaluation.scores.metrics
    assert metrics["videos"] == len(units)
    assert metrics["video_ap"] == pytest.approx(1.0) and metrics["video_ar10"] == pytest.approx(1.0)


def test_res_and_rvos_of_ground_truth_masks(data) -> None:
    evaluation, _, _ = _oracle(data["referring"], "res")
    assert evaluation.scores.metrics["overall_iou"] == 1.0 and evaluation.scores.metrics["accuracy"] == 1.0
    evaluation, _, _ = _oracle(data["video"], "rvos")
    assert evaluation.scores.metrics["jf_mean"] == pytest.approx(1.0)


def test_category_prompt_is_the_whole_vocabulary(data) -> None:
    store, units = _units(data["detection"], "detection")
    assert all(u.prompt == CategoryPrompt(tuple(c.name for c in store.categories)) for u in units)
    store, units = _units(data["referring"], "rec")
    # One unit per expression, in file order: every sentence of every referred object (RefCOCO's protocol).
    first = store.referrals[0]
    store = dataclasses.replace(store, referrals=[first._replace(sentences=("the one", "the other")),
                                                  *store.referrals[1:]])
    units = build_units(store, task="rec")
    expected = [(first.unit, first.instance_id, "the one"), (first.unit, first.instance_id, "the other")]
    expected += [(r.unit, r.instance_id, s) for r in store.referrals[1:] for s in r.sentences]
    assert [(u.store_unit, u.referent_ids[0], u.prompt.text) for u in units] == expected
