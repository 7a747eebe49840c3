"""The package finds its released assets without an editable install (opd_bench/paths.py)."""
from pathlib import Path

from opd_bench import paths

ROOT = Path(__file__).resolve().parents[1]


def test_the_source_checkout_is_the_asset_root():
    assert paths.find_asset_root(env="") == ROOT
    assert paths.asset_root_problem(ROOT) is None


def test_opd_bench_home_overrides(tmp_path):
    assert paths.find_asset_root(env=str(tmp_path)) == tmp_path.resolve()


def test_a_folder_without_assets_is_named_with_what_to_do(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    msg = paths.asset_root_problem(tmp_path)
    assert "tasks/" in msg and "configs/" in msg and "checkpoints/" not in msg.split("missing")[1]
    assert "OPD_BENCH_HOME" in msg


def test_the_current_directory_is_used_when_the_package_lies_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "PACKAGE_DIR", tmp_path / "site-packages" / "opd_bench")
    assert paths.find_asset_root(env="", cwd=ROOT) == ROOT
    assert paths.find_asset_root(env="", cwd=tmp_path) == tmp_path / "site-packages"


def test_a_released_name_without_assets_says_where_to_point(tmp_path, monkeypatch):
    import pytest

    from opd_bench import backbones
    from opd_bench.errors import CheckpointError

    monkeypatch.setattr(backbones, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(backbones, "RELEASED_DIR", tmp_path / "checkpoints")
    with pytest.raises(CheckpointError, match="OPD_BENCH_HOME"):
        backbones.resolve_checkpoint("base")
