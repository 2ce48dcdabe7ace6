"""Evaluation: the metrics themselves (`metrics`), feature extractors (`domain_classifier`, `inception`), and
sample quality of a set of images against cached reference statistics (`sample_quality`)."""
