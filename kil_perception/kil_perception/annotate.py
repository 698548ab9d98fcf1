"""Annotate a category's reference keypoints once (paper §III-A) and write them to a spec.

    python -m kil_perception.annotate --image mug.png --category mug --point rim=312,240 \\
        --point handle=351,262 --point base=300,301 --out spec.yaml
    python -m kil_perception.annotate --bag demos/episode_0000 --frame 0 --category "paper_box" \\
        --prompt "paper box" --names corner_a corner_b centre --out spec.yaml     # click in a window
    python -m kil_perception.annotate --bag demos/episode_0000 --category mug --names handle body rim \\
        --out spec.yaml --web             # a local web page (the default without a display)
    python -m kil_perception.annotate --bag demos/episode_0000 --export-frame frame.png   # for your own viewer

The reference image comes from a PNG/JPEG or from a frame of a rosbag2 bag (colour topic, frame
index). Keypoints are given on the command line (``--point``), clicked in a matplotlib window, one
per ``--names`` entry, in order, or — on a machine without a display, or with ``--web`` — placed
on a local web page (``kil_perception.annotation_page``: click, drag to adjust, Save; the command
prints its address and waits). The image is saved beside the spec as
``<category>_reference[_N].png``; the category is added to the spec (created if missing), or,
with ``--add-reference``, gets the reference image of its second instance (§IV-I). The written
spec is validated by loading it back, and a preview PNG with the labelled points is written
(``<category>_preview.png`` beside the spec unless ``--preview`` says where).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from kil_perception.images import read_rgb
from kil_perception.overlay import draw_keypoints
from kil_perception.spec import MAX_KEYPOINTS, MIN_KEYPOINTS, Category, KeypointSpec, Reference, load_spec


def parse_point(text: str) -> tuple[str, tuple[float, float]]:
    """'rim=312,240' -> ('rim', (312.0, 240.0))."""
    name, sep, coords = text.partition("=")
    parts = coords.split(",")
    try:
        if not sep or not name.strip() or len(parts) != 2:
            raise ValueError
        return name.strip(), (float(parts[0]), float(parts[1]))
    except ValueError:
        raise ValueError(f"--point {text!r}: expected NAME=U,V in pixels, e.g. rim=312,240") from None


def bag_frame(bag: Path, topic: str, index: int) -> np.ndarray:
    """The ``index``-th image on ``topic`` of a rosbag2 bag, as (H, W, 3) uint8 RGB."""
    from kil_interfaces import conversion
    from kil_interfaces.typestore import topic_messages

    count = 0
    for _, msg in topic_messages(bag, topic):
        if count == index:
            return conversion.image_to_rgb(msg, what=f"{bag}:{topic}")
        count += 1
    raise ValueError(f"{bag}: {topic} has {count} frames; --frame {index} does not exist")


def has_display() -> bool:
    """Whether matplotlib can open a window here (a display and an interactive backend)."""
    import matplotlib.pyplot as plt

    return plt.get_backend().lower() != "agg"


def annotate_on_page(rgb: np.ndarray, names: list[str], category: str, host: str, port: int, write) -> KeypointSpec:
    """Serve :class:`~kil_perception.annotation_page.AnnotationPage` until the points are saved
    (each Save is written with ``write``; one that the spec refuses is reported on the page)."""
    from kil_perception.annotation_page import AnnotationPage

    result: list[KeypointSpec] = []

    def save(points: dict[str, tuple[float, float]]) -> str:
        result[:] = [write(points)]
        return str(result[0].path)

    page = AnnotationPage(rgb, names, category, host, port, save).start()
    host_shown, port_shown = page.server.server_address[:2]
    print(
        f"open {page.url} in a browser, place {', '.join(names)} and Save "
        f"(from another machine: ssh -L {port_shown}:{host_shown}:{port_shown} THIS_HOST); Ctrl-C to give up",
        flush=True,
    )
    try:
        page.wait()
    finally:
        page.close()
    return result[0]


def click_points(rgb: np.ndarray, names: list[str]) -> dict[str, tuple[float, float]]:
    """Click one point per name in a matplotlib window (right click / backspace undoes)."""
    import matplotlib.pyplot as plt

    if plt.get_backend().lower() == "agg":
        raise RuntimeError("no display for the annotation window: give the points with --point NAME=U,V")
    figure, axes = plt.subplots()
    axes.imshow(rgb)
    points: dict[str, tuple[float, float]] = {}
    for name in names:
        axes.set_title(f"click '{name}' ({len(points) + 1}/{len(names)})")
        figure.canvas.draw_idle()
        clicked = plt.ginput(1, timeout=0)
        if not clicked:
            raise RuntimeError(f"window closed before '{name}' was clicked")
        (u, v) = clicked[0]
        points[name] = (u, v)
        axes.plot(u, v, "o", markersize=6)
        axes.annotate(name, (u, v), xytext=(6, -6), textcoords="offset points", color="white")
    plt.close(figure)
    return points


def annotate(
    out: Path,
    rgb: np.ndarray,
    category: str,
    points: dict[str, tuple[float, float]],
    prompt: str | None = None,
    instances: int = 1,
    add_reference: bool = False,
    preview: Path | None = None,
) -> KeypointSpec:
    """Add the annotation to the spec at ``out`` (created if missing) and write the preview.

    Returns:
        The validated spec as written.
    """
    if not MIN_KEYPOINTS <= len(points) <= MAX_KEYPOINTS:
        raise ValueError(f"{len(points)} keypoints given; {MIN_KEYPOINTS}-{MAX_KEYPOINTS} are required")
    out = out.resolve()
    spec = load_spec(out) if out.exists() else KeypointSpec(out, ())
    existing = {c.name: c for c in spec.categories}
    if add_reference:
        if category not in existing:
            raise ValueError(f"{out}: --add-reference needs category {category!r} to exist already")
        old = existing[category]
        if set(points) != set(old.keypoint_names):
            raise ValueError(
                f"{out}: {category} keypoints are {', '.join(old.keypoint_names)}; got {', '.join(points)}"
            )
        if len(old.references) >= 2:
            raise ValueError(f"{out}: {category} already has a reference per instance")
        points = {name: points[name] for name in old.keypoint_names}  # the first reference's order
    elif category in existing:
        raise ValueError(f"{out}: category {category!r} exists; use another name or --add-reference")
    index = len(existing[category].references) if add_reference else 0
    image_path = out.parent / (f"{category}_reference.png" if index == 0 else f"{category}_reference_{index}.png")
    height, width = rgb.shape[:2]
    for name, (u, v) in points.items():
        if not (0 <= u < width and 0 <= v < height):
            raise ValueError(f"keypoint {name} ({u}, {v}) is outside the {width}x{height} image")
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(image_path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    reference = Reference(image_path, dict(points))
    if add_reference:
        old = existing[category]
        updated = replace(old, instances=2, references=(*old.references, reference))
        categories = tuple(updated if c.name == category else c for c in spec.categories)
    else:
        categories = (
            *spec.categories,
            Category(category, prompt or category.replace("_", " "), instances, (reference,)),
        )
    staged = out.with_name(out.name + ".partial")
    KeypointSpec(out, categories).save(staged)  # (image paths relative to out's directory, the same)
    try:
        validated = load_spec(staged)  # only a usable spec replaces the old one
    except ValueError:
        staged.unlink()
        raise
    staged.replace(out)
    preview = preview or out.parent / f"{category}_preview.png"
    uv = np.array(list(points.values()))
    drawn = draw_keypoints(rgb, uv, list(points), [category] * len(points))
    cv2.imwrite(str(preview), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
    return KeypointSpec(out, validated.categories)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kil_perception.annotate", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", type=Path, help="reference image (PNG/JPEG)")
    source.add_argument("--bag", type=Path, help="rosbag2 bag directory to take the reference frame from")
    parser.add_argument("--topic", default="/camera/color/image_raw", help="colour topic in the bag")
    parser.add_argument("--frame", type=int, default=0, help="frame index on --topic (0 = first)")
    parser.add_argument("--category", help="object category name (e.g. mug)")
    parser.add_argument("--prompt", help="instance prompt for SAM3 (default: the category name)")
    parser.add_argument("--instances", type=int, default=1, choices=(1, 2), help="instances of this category")
    parser.add_argument("--point", action="append", default=[], help="NAME=U,V pixel keypoint (repeat; headless)")
    parser.add_argument("--names", nargs="+", help="keypoint names to click, in order (window mode)")
    parser.add_argument("--add-reference", action="store_true", help="second instance's reference for a category")
    parser.add_argument("--out", type=Path, help="spec YAML to create or extend")
    parser.add_argument("--web", action="store_true", help="place the --names points on a local web page")
    parser.add_argument("--host", default="127.0.0.1", help="address of the web page (--web)")
    parser.add_argument("--port", type=int, default=8765, help="port of the web page (--web; 0: any free port)")
    parser.add_argument("--export-frame", type=Path, help="write the reference frame as a PNG and exit")
    parser.add_argument("--preview", type=Path, help="preview PNG (default: <category>_preview.png beside the spec)")
    args = parser.parse_args(argv)
    if not args.export_frame and not (args.category and args.out):
        parser.error("--category and --out are required (or --export-frame PNG)")
    try:
        rgb = read_rgb(args.image, "--image") if args.image else bag_frame(args.bag, args.topic, args.frame)
        if args.export_frame:
            if not cv2.imwrite(str(args.export_frame), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
                raise OSError(f"cannot write {args.export_frame}")
            height, width = rgb.shape[:2]
            print(f"{args.export_frame}: the {width}x{height} reference frame (pixels for --point NAME=U,V)")
            return 0

        def write(points: dict[str, tuple[float, float]]) -> KeypointSpec:
            return annotate(
                args.out, rgb, args.category, points, args.prompt, args.instances, args.add_reference, args.preview
            )

        if args.point:
            points = dict(parse_point(text) for text in args.point)
            if len(points) != len(args.point):
                raise ValueError("a keypoint name is given twice in --point")
            spec = write(points)
        elif args.names and (args.web or not has_display()):
            spec = annotate_on_page(rgb, args.names, args.category, args.host, args.port, write)
        elif args.names:
            spec = write(click_points(rgb, args.names))
        else:
            raise ValueError("give the keypoints with --point NAME=U,V (repeat), or --names to click them")
    except (ValueError, RuntimeError, OSError) as error:
        print(f"annotate: {error}", file=sys.stderr)
        return 2
    print(f"{args.out}: {len(spec.categories)} categories, {spec.num_keypoints} keypoints per frame")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
