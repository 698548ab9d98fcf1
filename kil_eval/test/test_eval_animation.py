"""Rollout GIF captions keep every word, wrapped to the frame's width."""

from __future__ import annotations

import numpy as np
from PIL import ImageDraw

from kil_eval.animation import MARGIN_PX, titled, wrap


def test_a_long_caption_is_wrapped_not_cut() -> None:
    title = "KIL-IM | place_mug | unseen_object #0 | failure: keypoints lost or jumped (mug off on 31/40 frames)"
    frame = np.zeros((240, 320, 3), np.uint8)
    image = titled(frame, title)
    draw = ImageDraw.Draw(image)
    lines = wrap(title, 320 - 2 * MARGIN_PX, draw)
    assert len(lines) >= 2 and " ".join(lines) == title  # nothing dropped
    assert all(draw.textlength(line) <= 320 - 2 * MARGIN_PX for line in lines)
    assert image.width == 320 and image.height > 240 + 2 * 13  # the band grew to hold the lines
    band = np.asarray(image)[: image.height - 240]
    assert band[-MARGIN_PX - 5 :].any()  # text reaches the last line, under the first
    short = titled(frame, "RGB | ok")
    assert short.height < image.height
