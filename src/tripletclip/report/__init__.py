"""Reports of comparisons between objectives: the HTML page, its tables, words and plots (``tripletclip demo``,
``tripletclip report``)."""
from tripletclip.report.html import write_report
from tripletclip.report.labels import method_items
from tripletclip.report.render import render_folder, report
from tripletclip.report.summary import verdict
from tripletclip.report.tables import fmt_pm, text_table

__all__ = ["fmt_pm", "method_items", "render_folder", "report", "text_table", "verdict", "write_report"]
