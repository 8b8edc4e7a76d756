"""lcfusion:evaluate — the accuracy of a class map on reference polygons."""

from __future__ import annotations

from qgis.core import QgsProcessingOutputNumber

from .base import EngineAlgorithm


class Evaluate(EngineAlgorithm):
    algorithm_id = "evaluate"
    title = "Evaluate a class map"
    group_key = "evaluation"
    command = "evaluate"
    icon_file = "evaluate.svg"
    engine_packages = ("scikit-learn",)
    help_text = """
<p>Measures the accuracy of a class map against reference polygons, pixel by pixel: overall
accuracy, Cohen's Kappa, precision, recall and F1 per class, mean F1, and the confusion matrix
(<b>rows = reference, columns = prediction</b>). The map can come from any <i>Classify</i>
algorithm, from a model made with <i>Train FG-UNET</i>, <i>Train MRFusion</i>,
<i>Train TWINNS</i> or <i>Train Random Forest</i>, or from another tool, as long as it holds
the reference's class codes.</p>
<p>The polygons are burned on the class map's grid (a pixel belongs to a polygon when its
centre lies inside) and the map is read window by window, so the memory used does not depend
on the size of the raster. Give polygons that were <i>not</i> used for training (the test
polygons, or an independent survey): on training polygons the figures are optimistic.</p>
<h3>Parameters</h3>
<ul>
<li><b>Class map</b>: a single-band raster of integer class codes. Its nodata pixels are
skipped (their number is logged and given in the report). A code that is not a reference
class counts as a wrong prediction, in an extra column named "code N (not in the
reference)".</li>
<li><b>Reference polygons</b> and <b>Class field</b>: integer codes, or text names. Names
take the codes of the class table the map carries (written by the classify algorithms),
compared without regard to case and spaces; a name the table lacks is refused. A map without
a table (from another tool) gets the names numbered in alphabetical order, as training does,
with a warning. Optionally a <b>Class name field</b> — without it, the names stored in the
class map are used; names that differ from the map's for the same code are warned of — and a
colour field. The polygons are reprojected to the map's CRS.</li>
<li><b>Polygons of the split part</b>: <code>all</code>, or only the <code>train</code>,
<code>validation</code> or <code>test</code> polygons of a layer with a <code>part</code>
field — the <i>Reference polygons with their split part</i> that every training writes. With
<code>test</code>, a map is measured on exactly the polygons the model never saw: the model's
own map gives its test accuracy.</li>
<li><b>Report</b>: an HTML page (no external file) with the metrics, a picture of the
confusion matrix, the per-class table and what was compared. A temporary file when left
out.</li>
<li><b>Confusion matrix</b>: a CSV file; its header row holds the predicted classes (its first
cell says "rows = reference, columns = prediction"), then one row per reference class. A
temporary file when left out.</li>
</ul>
<p>The outputs OA, KAPPA, MEAN_F1 and N_PIXELS (pixels compared) can be chained in the
graphical modeler; the report opens from the Processing results viewer.</p>
<p>On the metrics and their limits: Congalton and Green, <i>Assessing the Accuracy of Remotely
Sensed Data</i>, 3rd ed., CRC Press, 2019; Olofsson et al., "Good practices for estimating area
and assessing accuracy of land change", <i>Remote Sensing of Environment</i> 148:42-57, 2014
(for area estimates, a probability sample of pixels is needed, not polygons: see <i>Sample
design for area estimation</i> and <i>Area estimates and accuracy</i>).</p>
"""

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.add_class_map_input()
        self.add_reference(part_filter=True)
        self.add_file_output("OUTPUT_HTML", "Report (HTML)", "report", ".html",
                             "HTML files (*.html)")
        self.add_file_output("OUTPUT_CSV", "Confusion matrix (CSV)", "matrix", ".csv",
                             "CSV files (*.csv)")
        for name, text in (("OA", "Overall accuracy"), ("KAPPA", "Cohen's Kappa"),
                           ("MEAN_F1", "Mean F1 score"),
                           ("N_PIXELS", "Pixels compared (reference pixels with a class)")):
            self.addOutput(QgsProcessingOutputNumber(name, text))
