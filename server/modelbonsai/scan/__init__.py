"""Which layers can I compress? A sensitivity scan (each op setting applied to one layer or block at
a time, measured by a fast proxy and/or a full evaluation), and recipes that meet a budget solved
over it. Engine code: imports nothing from `lsp` or `cli`.

- spec.py: what a scan measures (ScanSpec, ScanSetting), its fingerprint
- units.py: the layers or blocks scanned, in depth order
- measure.py: run_scan (proxy and full values, stored bytes per unit and setting)
- budget.py: the best per-layer recipe under a size or quality budget (exact multiple-choice knapsack)
"""
