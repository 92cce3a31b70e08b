"""Explorers: a live ipywidgets UI and its kernel-free static twin, from one render function.

The pattern every chapter follows::

    explorer = Explorer(render, {"family": ["cnn", "rnn"], "size": [1, 2, 4]})
    explorer.live()     # in Jupyter or Colab: controls re-run ``render`` on every change
    explorer.static()   # on the website: every combination pre-rendered, switched by plain JS

``render(**values)`` returns a matplotlib figure. The twin embeds one PNG per combination and a
few lines of inline JavaScript, so it works offline, with no kernel and no CDN. matplotlib and
ipywidgets (the optional extra ``shared_lib[book]``) are imported when a frame is rendered or
the live UI is built, never when this module is imported.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from shared_lib._validation import require_extra

if TYPE_CHECKING:  # matplotlib and ipywidgets are the optional extra shared_lib[book]
    from matplotlib.figure import Figure

__all__ = ["Explorer", "StaticTwin", "frame_dpi"]

_SCRIPT = """
<script>
(function () {
  var root = document.getElementById(%(uid)s);
  var frames = JSON.parse(root.querySelector("script.sl-frames").textContent);
  var controls = root.querySelectorAll("[data-control]");
  var image = root.querySelector("img.sl-frame");
  function update() {
    var key = [];
    controls.forEach(function (control) {
      var values = JSON.parse(control.dataset.values);
      var value = values[Number(control.value)];
      var shown = root.querySelector("output[data-for='" + control.dataset.control + "']");
      if (shown) { shown.textContent = value; }
      key.push(String(value));
    });
    var frame = frames[key.join("|")];
    image.src = frame.src;
    image.alt = frame.alt;
    if (frame.width) { image.style.maxWidth = "min(100%%, " + frame.width + "px)"; }
    root.dataset.state = key.join("|");
  }
  controls.forEach(function (control) {
    control.addEventListener("input", update);
    control.addEventListener("change", update);
  });
  update();
})();
</script>
"""


#: A frame is rendered at least this many pixels wide ...
MIN_FRAME_PIXELS = 1100
#: ... and at least twice its display size: 96 CSS pixels per inch of figure (its natural size,
#: at which a 10-point font reads as 10 points), so frames stay sharp on high-density screens.
CSS_PIXELS_PER_INCH = 96


def frame_dpi(width_inches: float, dpi: int | None = None) -> int:
    """The resolution a frame of this width is rendered at: ``dpi``, or enough for sharpness.

    Args:
        width_inches: the figure's width.
        dpi: an explicit resolution; ``None`` picks the smallest one that renders the frame at
            least ``MIN_FRAME_PIXELS`` wide and at twice its natural display size.

    Returns:
        Dots per inch.

    Examples:
        >>> from shared_lib.explore import frame_dpi
        >>> frame_dpi(7.0), frame_dpi(10.0), frame_dpi(7.0, dpi=72)
        (192, 192, 72)
        >>> frame_dpi(4.0)  # a narrow figure needs more dots to reach 1100 pixels
        275
    """
    if dpi is not None:
        return dpi
    return max(2 * CSS_PIXELS_PER_INCH, math.ceil(MIN_FRAME_PIXELS / width_inches))


def _figure_to_frame(figure: Figure, dpi: int | None) -> dict:
    """``{"src": data URI of the PNG, "width": display width in CSS pixels}``."""
    width_inches = float(figure.get_figwidth())
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=frame_dpi(width_inches, dpi))
    require_extra("matplotlib.pyplot", "Rendering an explorer's frames").close(figure)
    # 256 colours are plenty for a chart and make the sharp frames about 3x smaller, which
    # keeps a page of many frames light (Pillow comes with matplotlib).
    image = require_extra("PIL.Image", "Rendering an explorer's frames")
    buffer.seek(0)
    quantized = image.open(buffer).convert("RGB").quantize(256, method=image.Quantize.FASTOCTREE)
    buffer = io.BytesIO()
    quantized.save(buffer, format="PNG")
    return {
        "src": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"),
        "width": round(width_inches * CSS_PIXELS_PER_INCH),
    }


class StaticTwin:
    """Pre-rendered frames of an :class:`Explorer`, switched by its controls without a kernel.

    Made by :meth:`Explorer.static`; Jupyter and myst-nb display it through its
    ``_repr_html_``: a dropdown or slider per control, one ``<img>``, the frames as JSON and a
    few lines of inline JavaScript that swap the image.

    Args:
        uid: HTML id of the twin, stable across builds so that re-executed pages are identical.
        controls: control name → its values, in the order of the keys of ``frames``.
        frames: ``"value|value|..."`` → ``{"src": data URI of the PNG, "alt": alt text}``
            (and optionally ``"width"``, its display width in CSS pixels).
        title: shown above the controls.
        labels: control name → what the reader sees beside the control (words and units);
            default the name.

    Examples:
        >>> from shared_lib.explore import StaticTwin
        >>> frames = {"1": {"src": "data:,", "alt": "one"}, "2": {"src": "data:,", "alt": "two"}}
        >>> twin = StaticTwin("sl-twin-demo", {"n": [1, 2]}, frames, "Demo")
        >>> page = twin._repr_html_()
        >>> 'type="range"' in page, "http" in page  # a slider for numbers; nothing to fetch
        (True, False)
    """

    def __init__(
        self,
        uid: str,
        controls: Mapping[str, Sequence],
        frames: dict,
        title: str,
        labels: Mapping[str, str] | None = None,
    ):
        self.uid = uid
        self.controls = controls
        self.frames = frames
        self.title = title
        self.labels = dict(labels or {})

    def _control_html(self, name: str, values: Sequence) -> str:
        encoded = html.escape(json.dumps([str(v) for v in values]))
        key = html.escape(name)
        label = html.escape(self.labels.get(name, name))
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            return (
                f'<label>{label} <input type="range" min="0" max="{len(values) - 1}" step="1" '
                f'value="0" data-control="{key}" data-values="{encoded}"> '
                f'<output data-for="{key}"></output></label>'
            )
        options = "".join(
            f'<option value="{i}">{html.escape(str(v))}</option>' for i, v in enumerate(values)
        )
        return (
            f'<label>{label} <select data-control="{key}" data-values="{encoded}">'
            f"{options}</select></label>"
        )

    def _repr_html_(self) -> str:
        controls = " ".join(self._control_html(n, v) for n, v in self.controls.items())
        first = next(iter(self.frames.values()))
        style = (  # its natural size, or the column's width where the column is narrower
            f' style="max-width: min(100%, {first["width"]}px)"' if first.get("width") else ""
        )
        frames = json.dumps(self.frames).replace("</", "<\\/")
        return (
            f'<div class="sl-twin" id="{self.uid}">'
            f'<div class="sl-twin-title"><strong>{html.escape(self.title)}</strong> '
            "<em>(static twin: every setting pre-computed when the page was built)</em></div>"
            f'<div class="sl-twin-controls">{controls}</div>'
            f'<img class="sl-frame"{style} src="{first["src"]}" '
            f'alt="{html.escape(first["alt"])}">'
            f'<script type="application/json" class="sl-frames">{frames}</script>'
            "</div>" + _SCRIPT % {"uid": json.dumps(self.uid)}
        )


class Explorer:
    """A render function and the values of its controls; shown live or as a static twin.

    Args:
        render: ``render(**values) -> matplotlib.figure.Figure``; must be quick (< 2 s on a CPU)
            so that the live explorer keeps up with the reader.
        controls: control name → the values it can take (strings give a dropdown, numbers a
            slider). Keep the product small: the twin pre-renders every combination.
        title: shown above the twin.
        describe: ``describe(**values) -> str``, the alt text of each frame; default the
            title and the values.
        labels: control name → the words a reader sees beside the control, with units
            (``{"n_train": "training images per class"}``); default the name.

    Raises:
        TypeError: ``render`` is not callable, a control's values are a string or not a
            sequence, or a label is not a string.
        ValueError: ``controls`` is empty, a control has no values, or ``labels`` names a
            control that does not exist.

    Examples:
        A two-frame explorer and its static twin (the figures are closed once rendered):

        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> from shared_lib.explore import Explorer
        >>> def render(n):
        ...     figure, ax = plt.subplots(figsize=(1, 1))
        ...     ax.plot(range(n))
        ...     return figure
        >>> explorer = Explorer(render, {"n": [2, 3]}, title="lines", labels={"n": "points"})
        >>> twin = explorer.static(dpi=20)
        >>> len(twin.frames), twin.frames["3"]["alt"], twin.frames["3"]["width"]
        (2, 'lines: points = 3', 96)
        >>> "<label>points" in twin._repr_html_()
        True
    """

    def __init__(
        self,
        render: Callable[..., Figure],
        controls: Mapping[str, Sequence],
        title: str = "Explorer",
        describe: Callable[..., str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        if not callable(render):
            raise TypeError(f"render must be callable, got {type(render).__name__}")
        if not controls:
            raise ValueError("controls must name at least one control")
        for name, values in controls.items():
            if isinstance(values, str) or not isinstance(values, Sequence):
                raise TypeError(
                    f"controls[{name!r}] must be a non-empty list of values, got "
                    f"{type(values).__name__} {values!r}"
                )
            if not values:
                raise ValueError(f"controls[{name!r}] must be a non-empty list of values")
        labels = dict(labels or {})
        unknown = sorted(set(labels) - set(controls))
        if unknown:
            raise ValueError(
                f"labels name controls that do not exist: {unknown}; the controls are "
                f"{list(controls)}"
            )
        for name, label in labels.items():
            if not isinstance(label, str):
                raise TypeError(f"labels[{name!r}] must be a string, got {type(label).__name__}")
        self.render = render
        self.controls = {name: list(values) for name, values in controls.items()}
        self.title = title
        self.labels = {name: labels.get(name, name) for name in self.controls}
        self.describe = describe or (
            lambda **values: (
                f"{title}: " + ", ".join(f"{self.labels[k]} = {v}" for k, v in values.items())
            )
        )

    def combinations(self) -> list[dict]:
        """Every setting of the controls, in order (the last control varies fastest).

        Returns:
            One ``{control name: value}`` dict per combination.
        """
        names = list(self.controls)
        return [
            dict(zip(names, combo, strict=True))
            for combo in itertools.product(*self.controls.values())
        ]

    def static(self, dpi: int | None = None) -> StaticTwin:
        """Render every combination once and return the kernel-free twin (displays as HTML).

        Each frame is shown at its natural size (96 CSS pixels per inch of figure, never wider
        than the page) and rendered at twice that, at least 1100 pixels wide (:func:`frame_dpi`).

        Args:
            dpi: resolution of the embedded PNGs; ``None`` (default) picks it per figure as
                above. The page grows with its square.

        Returns:
            A :class:`StaticTwin` holding one frame per combination.
        """
        frames = {}
        for values in self.combinations():
            key = "|".join(str(v) for v in values.values())
            frames[key] = {
                **_figure_to_frame(self.render(**values), dpi),
                "alt": self.describe(**values),
            }
        digest = hashlib.sha1(
            json.dumps([self.title, self.controls], default=str).encode()
        ).hexdigest()
        return StaticTwin(
            f"sl-twin-{digest[:10]}", self.controls, frames, self.title, labels=self.labels
        )

    def live(self):
        """The live ipywidgets UI (needs a running kernel: Jupyter, JupyterLab or Colab).

        Numeric controls become selection sliders, others dropdowns; every change re-runs
        ``render`` and shows its figure.

        Returns:
            An ``ipywidgets.VBox`` of the controls and the output area.

        Raises:
            ImportError: ipywidgets, IPython or matplotlib is not installed.
        """
        widgets = require_extra("ipywidgets", "The live explorer")
        display = require_extra("IPython.display", "The live explorer").display
        plt = require_extra("matplotlib.pyplot", "The live explorer")

        controls = {}
        style = {"description_width": "initial"}  # the whole label, however long
        for name, values in self.controls.items():
            label = self.labels[name]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                controls[name] = widgets.SelectionSlider(
                    options=values, description=label, style=style
                )
            else:
                controls[name] = widgets.Dropdown(options=values, description=label, style=style)

        def show(**values):
            figure = self.render(**values)
            display(figure)
            plt.close(figure)

        output = widgets.interactive_output(show, controls)
        return widgets.VBox([widgets.HBox(list(controls.values())), output])
