"""Stands in for a machine without Ray: put first on PYTHONPATH, ``import ray`` fails as it would there."""

raise ImportError("No module named 'ray'", name="ray")
