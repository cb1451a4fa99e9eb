"""Checkpoint / VAE scanning: names, titles, hashes (cache.json), every alias, the yaml v-hint."""
import hashlib
import json
import os

import pytest

from modules.app.checkpoints import CheckpointRegistry, HashCache, VaeRegistry, v_prediction_hint

BIG = 0x100000 + 0x10000 + 100      # long enough for the legacy hash window (64 KiB @ 1 MiB)


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def model_dir(tmp_path):
    root = tmp_path / "models" / "Stable-diffusion"
    _write(root / "alpha.safetensors", bytes(range(256)) * (BIG // 256 + 1))
    _write(root / "sub" / "beta-v2.ckpt", b"beta checkpoint bytes")
    _write(root / "sub" / "deeper" / "gamma.pt", b"gamma")
    _write(root / "alpha.vae.safetensors", b"a vae, not a checkpoint")
    _write(root / "notes.txt", b"not a model")
    (root / "sub" / "beta-v2.yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    (root / "alpha.yaml").write_text("model:\n  params:\n    linear_start: 0.00085\n")
    return root


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_scan_names_titles_and_model_names(model_dir, tmp_path):
    registry = CheckpointRegistry(model_dir, hash_cache=HashCache(tmp_path / "cache.json"))
    registry.refresh()
    infos = registry.list()
    assert [i.name for i in infos] == ["alpha.safetensors", "sub/beta-v2.ckpt",
                                       "sub/deeper/gamma.pt"]
    assert [i.title for i in infos] == [i.name for i in infos]    # not hashed yet
    assert [i.model_name for i in infos] == ["alpha", "sub_beta-v2", "sub_deeper_gamma"]
    assert infos[0].filename == str(model_dir / "alpha.safetensors")
    assert infos[0].config == str(model_dir / "alpha.yaml") and infos[2].config is None
    assert infos[0].sha256 is None and infos[0].shorthash is None


def test_legacy_hash_is_64k_at_1m(model_dir):
    registry = CheckpointRegistry(model_dir)
    registry.refresh()
    alpha = registry.list()[0]
    data = (model_dir / "alpha.safetensors").read_bytes()
    assert alpha.legacy_hash == hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]


def test_ensure_hashed_uses_sha256_and_writes_cache(model_dir, tmp_path):
    cache_path = tmp_path / "cache.json"
    registry = CheckpointRegistry(model_dir, hash_cache=HashCache(cache_path))
    registry.refresh()
    alpha = registry.list()[0]
    registry.ensure_hashed(alpha)
    full = _sha(model_dir / "alpha.safetensors")
    assert alpha.sha256 == full and alpha.shorthash == full[:10]
    assert alpha.title == f"alpha.safetensors [{full[:10]}]"
    entry = json.loads(cache_path.read_text())["hashes"]["checkpoint/alpha.safetensors"]
    assert entry == {"mtime": os.path.getmtime(model_dir / "alpha.safetensors"), "sha256": full}
    assert registry.get_closest(full[:10]) is alpha


def test_cache_reused_while_mtime_unchanged_and_recomputed_after(model_dir, tmp_path):
    cache_path = tmp_path / "cache.json"
    target = model_dir / "sub" / "beta-v2.ckpt"
    fake = "f" * 64      # a value only the cache can have produced
    cache_path.write_text(json.dumps({"hashes": {"checkpoint/sub/beta-v2.ckpt": {
        "mtime": os.path.getmtime(target), "sha256": fake}}, "safetensors-metadata": {"k": 1}}))
    registry = CheckpointRegistry(model_dir, hash_cache=HashCache(cache_path))
    registry.refresh()
    beta = registry.get_closest("sub/beta-v2.ckpt")
    assert beta.sha256 == fake and beta.title == "sub/beta-v2.ckpt [ffffffffff]"

    os.utime(target, (1_000_000, 1_000_000))          # the file changed on disk
    registry = CheckpointRegistry(model_dir, hash_cache=HashCache(cache_path))
    registry.refresh()
    beta = registry.get_closest("sub/beta-v2.ckpt")
    assert beta.sha256 is None
    registry.ensure_hashed(beta)
    assert beta.sha256 == _sha(target)
    stored = json.loads(cache_path.read_text())
    assert stored["hashes"]["checkpoint/sub/beta-v2.ckpt"]["mtime"] == 1_000_000
    assert stored["safetensors-metadata"] == {"k": 1}     # other sections are kept


def test_no_hashing_leaves_hashes_empty(model_dir, tmp_path):
    registry = CheckpointRegistry(model_dir, hash_cache=HashCache(tmp_path / "c.json"),
                                  no_hashing=True)
    registry.refresh()
    info = registry.ensure_hashed(registry.list()[0])
    assert info.sha256 is None and info.title == "alpha.safetensors"
    assert not (tmp_path / "c.json").exists()


def test_every_alias_and_the_fuzzy_rule(model_dir):
    registry = CheckpointRegistry(model_dir)
    registry.refresh()
    beta = registry.get_closest("sub/beta-v2.ckpt")
    registry.ensure_hashed(beta)
    full = _sha(model_dir / "sub" / "beta-v2.ckpt")
    aliases = [beta.legacy_hash, "sub_beta-v2", "sub/beta-v2.ckpt", "beta-v2",
               f"sub/beta-v2.ckpt [{beta.legacy_hash}]", full[:10], full,
               f"sub/beta-v2.ckpt [{full[:10]}]", f"beta-v2 [{full[:10]}]"]
    assert set(aliases) <= set(beta.aliases)
    for alias in aliases:
        assert registry.get_closest(alias) is beta, alias
    # fuzzy: the shortest title containing the text
    assert registry.get_closest("gamma") is registry.get_closest("sub/deeper/gamma.pt")
    assert registry.get_closest("a.").name == "alpha.safetensors"
    # a stale " [hash]" suffix from an old config.json still finds the file
    assert registry.get_closest("alpha.safetensors [0000000000]").name == "alpha.safetensors"
    assert registry.get_closest("does-not-exist") is None


def test_extra_dirs_and_extra_files(model_dir, tmp_path):
    extra = tmp_path / "elsewhere"
    _write(extra / "delta.safetensors", b"delta")
    loose = _write(tmp_path / "loose" / "epsilon.ckpt", b"eps")
    registry = CheckpointRegistry(model_dir, extra_dirs=[extra], extra_files=[loose])
    registry.refresh()
    names = [i.name for i in registry.list()]
    assert "delta.safetensors" in names and "epsilon.ckpt" in names
    assert registry.get_closest("epsilon").filename == str(loose)


def test_v_prediction_hint_from_yaml(model_dir):
    registry = CheckpointRegistry(model_dir)
    registry.refresh()
    assert v_prediction_hint(registry.get_closest("sub/beta-v2.ckpt")) is True
    assert v_prediction_hint(registry.get_closest("alpha.safetensors")) is False
    assert v_prediction_hint(registry.get_closest("gamma")) is None


def test_vae_registry(model_dir, tmp_path):
    vae_dir = tmp_path / "models" / "VAE"
    _write(vae_dir / "kl-f8.safetensors", b"vae one")
    _write(vae_dir / "sub" / "other.pt", b"vae two")
    _write(vae_dir / "readme.md", b"no")
    vaes = VaeRegistry(vae_dir, extra_dirs=[model_dir], hash_cache=HashCache(tmp_path / "c.json"))
    vaes.refresh()
    names = [v.model_name for v in vaes.list()]
    assert sorted(names) == ["alpha.vae.safetensors", "kl-f8.safetensors", "other.pt"]
    assert vaes.names()[:2] == ["Automatic", "None"]
    assert vaes.find("kl-f8.safetensors").filename == str(vae_dir / "kl-f8.safetensors")
    assert vaes.find("other").filename == str(vae_dir / "sub" / "other.pt")
    assert vaes.find("missing") is None
    assert vaes.find("kl-f8").shorthash() == hashlib.sha256(b"vae one").hexdigest()[:10]
    near = vaes.find_near_checkpoint(model_dir / "alpha.safetensors")
    assert near is not None and near.model_name == "alpha.vae.safetensors"
    assert vaes.find_near_checkpoint(model_dir / "sub" / "beta-v2.ckpt") is None


def test_symlinked_folders_are_followed(model_dir, tmp_path):
    collection = tmp_path / "collection"
    _write(collection / "linked.safetensors", b"linked")
    (model_dir / "shared").symlink_to(collection, target_is_directory=True)
    registry = CheckpointRegistry(model_dir)
    registry.refresh()
    assert registry.get_closest("shared/linked.safetensors") is not None
