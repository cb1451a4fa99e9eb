"""Run at launch in its own process (skipped with --skip-install): leaves a marker file."""
from pathlib import Path

(Path(__file__).parent / "installed.txt").write_text("installed\n")
