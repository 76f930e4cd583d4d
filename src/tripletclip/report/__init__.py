"""Reports of comparisons between objectives: the HTML page, its tables, words and plots (``tripletclip demo``)."""
from tripletclip.report.html import write_report
from tripletclip.report.labels import method_items
from tripletclip.report.summary import verdict
from tripletclip.report.tables import fmt_pm, text_table

__all__ = ["fmt_pm", "method_items", "text_table", "verdict", "write_report"]
