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
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from shared_lib._validation import require_extra

if TYPE_CHECKING:  # matplotlib and ipywidgets are the optional extra shared_lib[book]
    from matplotlib.figure import Figure

__all__ = ["Explorer", "StaticTwin"]

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


def _figure_to_data_uri(figure: Figure, dpi: int) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    require_extra("matplotlib.pyplot", "Rendering an explorer's frames").close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class StaticTwin:
    """Pre-rendered frames of an :class:`Explorer`, switched by its controls without a kernel.

    Made by :meth:`Explorer.static`; Jupyter and myst-nb display it through its
    ``_repr_html_``: a dropdown or slider per control, one ``<img>``, the frames as JSON and a
    few lines of inline JavaScript that swap the image.

    Args:
        uid: HTML id of the twin, stable across builds so that re-executed pages are identical.
        controls: control name → its values, in the order of the keys of ``frames``.
        frames: ``"value|value|..."`` → ``{"src": data URI of the PNG, "alt": alt text}``.
        title: shown above the controls.

    Examples:
        >>> from shared_lib.explore import StaticTwin
        >>> frames = {"1": {"src": "data:,", "alt": "one"}, "2": {"src": "data:,", "alt": "two"}}
        >>> twin = StaticTwin("sl-twin-demo", {"n": [1, 2]}, frames, "Demo")
        >>> page = twin._repr_html_()
        >>> 'type="range"' in page, "http" in page  # a slider for numbers; nothing to fetch
        (True, False)
    """

    def __init__(self, uid: str, controls: Mapping[str, Sequence], frames: dict, title: str):
        self.uid = uid
        self.controls = controls
        self.frames = frames
        self.title = title

    def _control_html(self, name: str, values: Sequence) -> str:
        encoded = html.escape(json.dumps([str(v) for v in values]))
        label = html.escape(name)
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            return (
                f'<label>{label} <input type="range" min="0" max="{len(values) - 1}" step="1" '
                f'value="0" data-control="{label}" data-values="{encoded}"> '
                f'<output data-for="{label}"></output></label>'
            )
        options = "".join(
            f'<option value="{i}">{html.escape(str(v))}</option>' for i, v in enumerate(values)
        )
        return (
            f'<label>{label} <select data-control="{label}" data-values="{encoded}">'
            f"{options}</select></label>"
        )

    def _repr_html_(self) -> str:
        controls = " ".join(self._control_html(n, v) for n, v in self.controls.items())
        first = next(iter(self.frames.values()))
        frames = json.dumps(self.frames).replace("</", "<\\/")
        return (
            f'<div class="sl-twin" id="{self.uid}">'
            f'<div class="sl-twin-title"><strong>{html.escape(self.title)}</strong> '
            "<em>(static twin: every setting pre-computed when the page was built)</em></div>"
            f'<div class="sl-twin-controls">{controls}</div>'
            f'<img class="sl-frame" src="{first["src"]}" alt="{html.escape(first["alt"])}">'
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

    Raises:
        TypeError: ``render`` is not callable, or a control's values are a string or not a
            sequence.
        ValueError: ``controls`` is empty, or a control has no values.

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
        >>> twin = Explorer(render, {"n": [2, 3]}, title="lines").static(dpi=20)
        >>> len(twin.frames), twin.frames["3"]["alt"]
        (2, 'lines: n = 3')
    """

    def __init__(
        self,
        render: Callable[..., Figure],
        controls: Mapping[str, Sequence],
        title: str = "Explorer",
        describe: Callable[..., str] | None = None,
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
        self.render = render
        self.controls = {name: list(values) for name, values in controls.items()}
        self.title = title
        self.describe = describe or (
            lambda **values: f"{title}: " + ", ".join(f"{k} = {v}" for k, v in values.items())
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

    def static(self, dpi: int = 72) -> StaticTwin:
        """Render every combination once and return the kernel-free twin (displays as HTML).

        Args:
            dpi: resolution of the embedded PNGs (the page grows with its square).

        Returns:
            A :class:`StaticTwin` holding one frame per combination.
        """
        frames = {}
        for values in self.combinations():
            key = "|".join(str(v) for v in values.values())
            frames[key] = {
                "src": _figure_to_data_uri(self.render(**values), dpi),
                "alt": self.describe(**values),
            }
        digest = hashlib.sha1(
            json.dumps([self.title, self.controls], default=str).encode()
        ).hexdigest()
        return StaticTwin(f"sl-twin-{digest[:10]}", self.controls, frames, self.title)

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
        for name, values in self.controls.items():
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                controls[name] = widgets.SelectionSlider(options=values, description=name)
            else:
                controls[name] = widgets.Dropdown(options=values, description=name)

        def show(**values):
            figure = self.render(**values)
            display(figure)
            plt.close(figure)

        output = widgets.interactive_output(show, controls)
        return widgets.VBox([widgets.HBox(list(controls.values())), output])
