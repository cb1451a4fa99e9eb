"""Checkpoint merging: requests and recipes (`request.py`), the merger (`service.py`) and the
command line (`python -m modules.merger recipe.json`)."""
