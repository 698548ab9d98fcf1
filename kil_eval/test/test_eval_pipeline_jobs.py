"""Methods at once (``PipelineConfig.jobs``): each method's stages in its own process with the
CPU's threads divided, logs per method; a method that fails names itself and its log, and the
others still finish. The successful path runs in the quick demo (``test_eval_demo``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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


def test_the_layout_check_reaches_image_matching_only(tmp_path: Path) -> None:
    """``layout_check`` checks image matching (KIL-IM); the instance-matched methods' settings stay
    valid without it, and the stage's cache key (so its keypoints) differs from the unchecked run's."""
    from kil_eval.pipeline import Pipeline
    from kil_perception.pipeline import ExtractorConfig

    pipeline = Pipeline(PipelineConfig(out=tmp_path, methods=("KIL-T", "KIL-IN", "KIL-IM"), layout_check=0.1))
    built = {}
    for method in ("KIL-T", "KIL-IN", "KIL-IM"):
        settings = pipeline.extraction(method)
        settings.pop("spec")
        built[method] = ExtractorConfig(**settings)
    assert built["KIL-IM"].layout_check == 0.1
    assert built["KIL-T"].layout_check == 0.0 and built["KIL-IN"].layout_check == 0.0
    plain = Pipeline(PipelineConfig(out=tmp_path, methods=("KIL-IM",))).extraction("KIL-IM")
    assert "layout_check" not in plain  # (the paper's matching: the earlier runs' stored settings)


#: A study whose methods' workers run "for ever" (``Pipeline.method`` replaced at import time, which a
#: spawned worker repeats when it imports this file as its main module), each writing its pid first.
_WORKERS_FOR_EVER = """
import os
import sys
import time
from pathlib import Path

from kil_eval import pipeline


def _for_ever(self, method, bags, **stages):
    (self.config.out / f"{method}.pid").write_text(str(os.getpid()))
    time.sleep(600)


pipeline.Pipeline.method = _for_ever

if __name__ == "__main__":
    config = pipeline.PipelineConfig(task="place_mug", out=Path(sys.argv[1]), methods=("RGB", "S2"), jobs=2)
    pipeline.Pipeline(config)._in_processes([], 2)
"""


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie nobody reaped has stopped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_the_workers_stop_when_the_study_is_killed(tmp_path: Path) -> None:
    """SIGKILL (or SIGTERM) of the parent reaches only the parent; its method workers must not go on
    training for hours (found when a killed study's two trainings kept both cores busy)."""
    script = tmp_path / "study.py"
    script.write_text(_WORKERS_FOR_EVER)
    out = tmp_path / "out"
    out.mkdir()
    parent = subprocess.Popen(
        [sys.executable, str(script), str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    pids = []
    deadline = time.monotonic() + 120
    while len(pids) < 2 and time.monotonic() < deadline:
        pids = [int(p.read_text()) for p in out.glob("*.pid") if p.read_text()]
        time.sleep(0.2)
    assert len(pids) == 2, parent.stderr.read().decode() if parent.poll() is not None else "workers never started"
    assert all(_running(pid) for pid in pids)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 60
    while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [pid for pid in pids if _running(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"workers {left} kept running after their parent was killed"
    for method in ("RGB", "S2"):
        assert "parent process" in (out / "logs" / f"{method}.log").read_text()
