"""``opd-bench report``: one self-contained HTML page (images as base64 data URIs, inline CSS, no external
requests) and a Markdown twin with its PNG files beside it, under ``reports/<name>/``, plus ``report.json``
with every number shown.

One module per section, each a ``compute(...) -> data`` apart from its ``render(doc, data, ...)``:
:mod:`.headline` (final comparison: raw scores first, gold scorer first, MDEs, normalisation with its reasons,
both budget views), :mod:`.budget` (student phase and total including the teachers, score against total cost),
:mod:`.forgetting` (learning curves and forgetting), :mod:`.interference`, :mod:`.variance`, :mod:`.hacking`
(proxy vs gold), :mod:`.statistics` (paired method comparisons with Holm's correction, IQM, probability of
improvement) and :mod:`.samples`; :mod:`.build` composes them. The statistics come from
:mod:`opd_bench.comparison`, the engine ``check`` and ``compare`` use too.
"""
from .build import build_report
from .document import PAGE_WIDTH_PX, SECTIONS, Doc, png_width, seeds_cell
from .headline import compute as final_table_data
from .runs import config_differences, default_name, default_out, expand_runs, find_run_dirs, group_runs
from .statistics import improvement_matrix

__all__ = ["build_report", "PAGE_WIDTH_PX", "SECTIONS", "Doc", "png_width", "seeds_cell", "final_table_data",
           "config_differences", "default_name", "default_out", "expand_runs", "find_run_dirs", "group_runs",
           "improvement_matrix"]
