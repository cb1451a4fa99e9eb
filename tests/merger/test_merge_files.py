"""What a merge does on disk: a new file only when complete (interrupt, write error), never over an
existing one unless asked, ckpt output, the copied config sidecar, the recipe command line."""
from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from modules.engine.checkpoint_merge import MergeWriteError
from modules.merger.request import InvalidMergeRequest, MergeRequest
from modules.merger.service import MergeModelNotFound
from tests.merger.conftest import merged_keys

ROOT = Path(__file__).resolve().parents[2]


class StopMerge(Exception):
    pass


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_an_interrupted_merge_leaves_no_file(models):
    models.write("a.safetensors", "sd1", 1)
    models.write("b.safetensors", "sd1", 2)
    written = []

    def stop_at_tensor_100(done: int, total: int, key: str) -> None:
        written.append(key)
        if done == 100:
            raise StopMerge()

    with pytest.raises(StopMerge):
        models.merger().merge(MergeRequest("a", "b", custom_name="blend"),
                              callback=stop_at_tensor_100)
    assert len(written) == 100
    assert files_in(models.dir) == ["a.safetensors", "b.safetensors"]   # no partial file either


def run_merger_cli(args: list[str], *, file_size_limit: int | None = None):
    def limit_file_size() -> None:
        # a write beyond the limit fails with EFBIG, as a full disk fails with ENOSPC
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run([sys.executable, "-m", "modules.merger", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          preexec_fn=limit_file_size if file_size_limit else None)


def test_a_write_error_is_reported_and_leaves_no_partial_file(models, tmp_path):
    models.write("a.safetensors", "sd1", 1)
    models.write("b.safetensors", "sd1", 2)
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"primary_model_name": "a", "secondary_model_name": "b",
                                  "custom_name": "blend"}))
    size = (models.dir / "a.safetensors").stat().st_size
    done = run_merger_cli([str(recipe), "--data-dir", str(models.data)],
                          file_size_limit=size // 2)
    assert done.returncode == 1
    assert "could not write blend.safetensors" in done.stderr and "nothing was saved" in done.stderr
    assert files_in(models.dir) == ["a.safetensors", "b.safetensors"]


def test_an_existing_checkpoint_is_kept_unless_overwrite_is_asked(models):
    models.write("a.safetensors", "sd1", 1)
    models.write("b.safetensors", "sd1", 2)
    existing = models.dir / "blend.safetensors"
    existing.write_bytes(b"the user's own file")
    merger = models.merger()
    with pytest.raises(FileExistsError, match="blend.safetensors already exists"):
        merger.merge(MergeRequest("a", "b", custom_name="blend"))
    assert existing.read_bytes() == b"the user's own file"
    merger.merge(MergeRequest("a", "b", custom_name="blend", overwrite=True))
    assert len(models.load(existing)) > 100


@pytest.mark.parametrize("name", ["../escape", "sub/blend", "sub\\blend", "..", ".hidden", " "])
def test_output_names_that_leave_the_folder_are_refused(models, name):
    models.write("a.safetensors", "sd1", 1)
    models.write("b.safetensors", "sd1", 2)
    with pytest.raises(InvalidMergeRequest, match="custom_name"):
        models.merger().merge(MergeRequest("a", "b", custom_name=name))
    assert files_in(models.dir) == ["a.safetensors", "b.safetensors"]


def test_a_missing_model_is_named(models):
    models.write("a.safetensors", "sd1", 1)
    with pytest.raises(MergeModelNotFound, match=r"secondary model \(B\) 'nowhere' not found"):
        models.merger().merge(MergeRequest("a", "nowhere"))


def test_ckpt_output_loads_with_the_safe_unpickler(models):
    a_path, b_path = models.write("a.safetensors", seed=1), models.write("b.safetensors", seed=2)
    result = models.merger().merge(MergeRequest("a", "b", checkpoint_format="ckpt"))
    assert result.name == "0.7(a) + 0.3(b).ckpt"
    out = torch.load(result.filename, weights_only=True)
    a, b = models.load(a_path), models.load(b_path)
    for key in merged_keys(a, b):
        torch.testing.assert_close(out[key], 0.7 * a[key] + 0.3 * b[key])


def test_the_config_sidecar_is_copied_from_a_b_or_c(models):
    models.write("a.safetensors", "sd2_v", 1)
    models.write("b.safetensors", "sd2_v", 2)
    (models.dir / "b.yaml").write_text("model:\n  params:\n    parameterization: v\n")
    merger = models.merger()
    result = merger.merge(MergeRequest("a", "b", custom_name="v-blend"))
    assert result.config == str(models.dir / "v-blend.yaml")
    assert "parameterization: v" in (models.dir / "v-blend.yaml").read_text()
    merger.merge(MergeRequest("a", "b", custom_name="no-config", config_source="Don't"))
    assert not (models.dir / "no-config.yaml").exists()


def test_a_pinned_hash_that_does_not_match_is_refused(models):
    models.write("a.safetensors", "sd1", 1)
    models.write("b.safetensors", "sd1", 2)
    with pytest.raises(InvalidMergeRequest, match="different file"):
        models.merger().merge(MergeRequest("a", "b", primary_model_sha256="0" * 64))


def test_a_recipe_rebuilds_a_merge_byte_for_byte_from_the_command_line(models, tmp_path):
    models.write("a.safetensors", "sd1", 1)
    models.write("b.safetensors", "sd1", 2)
    merged = models.merger().merge(MergeRequest("a", "b", save_as_half=True, custom_name="first"))
    recipe_file = tmp_path / "recipe.json"
    recipe_file.write_text(json.dumps(merged.recipe))
    first = Path(merged.filename).read_bytes()
    Path(merged.filename).unlink()               # the same name again, from the recipe
    done = run_merger_cli([str(recipe_file), "--data-dir", str(models.data)])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["filename"] == merged.filename
    assert Path(merged.filename).read_bytes() == first


def test_the_recipe_of_a_merged_file_is_read_back_from_its_metadata(models):
    models.write("a.safetensors", "sd1", 1)
    models.write("b.safetensors", "sd1", 2)
    merged = models.merger().merge(MergeRequest("a", "b", multiplier=0.4, custom_name="m"))
    done = run_merger_cli(["--recipe-from", merged.filename])
    assert done.returncode == 0, done.stderr
    recipe = json.loads(done.stdout)
    assert {key: recipe[key] for key in ("primary_model_name", "secondary_model_name",
                                         "primary_model_sha256", "multiplier")} == {
        "primary_model_name": "a.safetensors", "secondary_model_name": "b.safetensors",
        "primary_model_sha256": merged.recipe["primary_model_sha256"], "multiplier": 0.4}


def test_too_little_disk_space_is_refused_before_writing(models):
    models.write("a.safetensors", "sd1", 1)
    merger = models.merger()
    # a folder on a 1 MiB filesystem is not available to an unprivileged test; the check
    # itself is what the merger calls with the plan's size
    from modules.engine.checkpoint_merge import check_free_space
    with pytest.raises(MergeWriteError, match="not enough disk space"):
        check_free_space(models.dir, 2**62)
    assert merger.merge(MergeRequest("a", interp_method="No interpolation", custom_name="copy"))
