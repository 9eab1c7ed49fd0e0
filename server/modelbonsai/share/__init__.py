"""Sharing a lineage beyond the workspace: import from Compress and Compare, a self-contained HTML
report, MLflow. Engine code: imports nothing from `lsp` or `cli`."""
