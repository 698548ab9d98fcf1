"""Methods at once (``PipelineConfig.jobs``): each method's stages in its own process with the
CPU's threads divided, logs per method; a method that fails names itself and its log, and the
others still finish. The successful path runs in the quick demo (``test_eval_demo``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kil_eval.pipeline import PipelineConfig, _progress
from kil_eval.study import main as study_main


def test_jobs_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        PipelineConfig(out=tmp_path, jobs=0)
    with pytest.raises(SystemExit):
        study_main(["--jobs", "0", "--out", str(tmp_path)])


#: Run in a child process: the spawn context's resource tracker lives as long as its parent.
_FAIL_BOTH = """
import sys
from pathlib import Path
from kil_eval.pipeline import Pipeline, PipelineConfig, TrainingSize
out = Path(sys.argv[1])
tiny = TrainingSize(steps=2, batch_size=2, image_size=(48, 64), image_backbone="effnet_lite0_frozen")
config = PipelineConfig(task="place_mug", out=out, methods=("RGB", "S2"), rgb=tiny, jobs=2, gif=False)
Pipeline(config)._in_processes([], 2)
"""


def test_every_failed_method_is_named_with_its_log_after_the_others_finish(tmp_path: Path) -> None:
    (tmp_path / "demos").mkdir()  # no demonstrations: both trainings fail in their workers
    done = subprocess.run(
        [sys.executable, "-c", _FAIL_BOTH, str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode != 0
    message = done.stderr
    assert "RuntimeError: method" in message, message[-3000:]
    for method in ("RGB", "S2"):
        log = tmp_path / "logs" / f"{method}.log"
        assert f"method {method} failed" in message and str(log) in message
        assert log.is_file()
        assert f"[methods] {method} failed" in done.stdout
    assert "EpisodeError" in message and str(tmp_path / "demos") in message
    assert "[methods] RGB, S2: 2 at a time" in done.stdout


def test_progress_is_the_last_bar_in_the_log(tmp_path: Path) -> None:
    log = tmp_path / "KIL-IN.log"
    assert _progress(log) == "starting"
    log.write_text("extract KIL-IN: 100%|##########| 50/50 [04:01<00:00]\ntrain:  12%|#    | 1200/10000 [01:00<07:20]\r"
                   "train:  13%|#    | 1300/10000 [01:05<07:15, 20step/s, loss=0.1]")  # fmt: skip
    assert _progress(log) == "train 13%"


def test_kil_t_starts_its_tracks_by_instance_matching_as_the_paper(tmp_path: Path) -> None:
    """Paper §III-B: the tracker is initialised by instance matching; here in the simulator's masks,
    so the demonstrations are recorded with them."""
    from kil_eval.pipeline import Pipeline
    from kil_perception.pipeline import ExtractorConfig

    pipeline = Pipeline(PipelineConfig(out=tmp_path, methods=("KIL-T",)))
    settings = pipeline.extraction("KIL-T")
    settings.pop("spec")
    extractor = ExtractorConfig(**settings)
    assert extractor.method == "track" and extractor.track_init == "instance" and extractor.uses_given_masks
    assert not extractor.mask_guard  # (the paper's tracking unless asked)


def test_the_mask_guard_reaches_kil_t_only(tmp_path: Path) -> None:
    """``mask_guard`` in a pipeline keeps KIL-T's tracks on the masks; instance and image matching
    have no tracks, so their settings stay valid extractor settings without it."""
    from kil_eval.pipeline import Pipeline
    from kil_perception.pipeline import ExtractorConfig

    pipeline = Pipeline(PipelineConfig(out=tmp_path, methods=("KIL-T", "KIL-IN", "KIL-IM"), mask_guard=True))
    built = {}
    for method in ("KIL-T", "KIL-IN", "KIL-IM"):
        settings = pipeline.extraction(method)
        settings.pop("spec")
        built[method] = ExtractorConfig(**settings)
    assert built["KIL-T"].mask_guard and not built["KIL-IN"].mask_guard and not built["KIL-IM"].mask_guard
