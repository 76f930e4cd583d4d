"""Reports of comparisons between objectives: the HTML page and its plots (used by ``tripletclip demo``)."""
from tripletclip.report.html import fmt_pm, text_table, write_report

__all__ = ["fmt_pm", "text_table", "write_report"]
