"""What `qgis_process` prints of a run: its progress dots, and its copies of an error.

`qgis_process` 3.22 (text output) prints progress on stdout as dots and tens ("0...10...20")
without ending the line, and every message (progress text, info, warning) with a newline after
it: a message that follows some dots runs into them ("10epoch 1/5"). `ConsoleLine` follows the
dots as `qgis_process` prints them and ends their line before the next message; a stage's name
comes before its dots.

It also prints an algorithm's exception three times on stderr: `QgsProcessingAlgorithm::run`
logs it to the message log (which `qgis_process` copies to stderr), its console feedback prints
it ("ERROR:<tab>…") and then logs it again. `mute_error_copies` silences the message log's copies
for the rest of the failed run, so that the error is printed once.
"""

from __future__ import annotations

import sys

from qgis.core import QgsApplication, QgsProcessingFeedback
from qgis.PyQt.QtCore import QCoreApplication, QTimer

#: qgis_process prints a dot (or the tens) for each of these steps of the progress (in %).
TICKS = 40


def in_qgis_process() -> bool:
    """Whether this is `qgis_process`, which prints the feedback on a terminal."""
    return QgsApplication.instance() is not None and QgsApplication.platform() == "qgis_process"


def json_output() -> bool:
    """Whether `qgis_process` was asked for JSON output (no dots, no console lines then)."""
    return "--json" in QCoreApplication.arguments()


class ConsoleLine:
    """Ends `qgis_process`'s line of progress dots before a message is printed after it.

    The dots are followed exactly when the feedback is qgis_process's own (its ticks are those
    of the progress the plugin sets); inside a model the feedback maps the progress onto the
    model's, so any progress since the last message counts as dots printed. Elsewhere (the
    desktop's dialogs, scripts, tests) it does nothing.
    """

    def __init__(self, feedback: QgsProcessingFeedback):
        self.feedback = feedback
        self.active = in_qgis_process() and not json_output()
        self.exact = type(feedback) is QgsProcessingFeedback
        self._last_tick = -1
        self._open = False

    def progressed(self, percent: float) -> None:
        """The plugin set the feedback's progress to `percent`."""
        if not self.active:
            return
        if not self.exact:
            self._open = True
            return
        tick = min(TICKS, max(0, int(percent * TICKS / 100.0)))
        if tick > self._last_tick:
            self._last_tick = tick
            self._open = tick < TICKS  # the last tick ends the line (" - done.")

    def announces_stage(self, percent: float) -> bool:
        """Whether a stage that starts at `percent` is named: on the terminal, not one that
        starts at the end (such as "done" right after qgis_process's "100 - done.")."""
        return not self.active or percent < 100.0

    def end_line(self) -> None:
        """End the line of dots, if one is open, so that what follows starts a line."""
        if self._open:
            self._open = False
            self.feedback.pushInfo("")


def mute_error_copies(message: str) -> None:
    """In `qgis_process`, let the algorithm's error `message` (about to be raised) be printed
    once: the message log's copies are muted until control returns to the event loop, that is
    after QGIS has reported the failure (the process then ends). With JSON output, where the
    console feedback prints no error line, the message is printed here instead."""
    if not in_qgis_process():
        return
    log = QgsApplication.messageLog()
    log.blockSignals(True)
    QTimer.singleShot(0, lambda: log.blockSignals(False))
    if json_output():
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
