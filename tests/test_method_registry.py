"""Issue 25 items 1-2 and issue 20's recipes: a method owns its identity (one registry, traits instead of name
tests, teacher/reference resolution in one place, backbone capabilities), typed values end to end (``--budget``
is a typed BudgetConfig, each enumeration defined once), and ``run`` layers configs/recipes/<method>.yaml."""
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from opd_bench import plan
from opd_bench.cli import main, parse_budget
from opd_bench.config import BudgetConfig, build_config, load_config, to_flat_dict
from opd_bench.errors import ConfigError, UserError
from opd_bench.ledger import UNITS
from opd_bench.methods import METHODS, method_class, method_names

PACKAGE = Path(__file__).resolve().parent.parent / "opd_bench"

#: each method's traits, as the analyses, the report, the runner and the plan read them
TRAITS = {
    #             uses_teachers single_task in_sequence gradient_objective config_sections
    "opd":          (True,  False, False, "opd",  ("opd",)),
    "sft-distill":  (True,  False, False, "grpo", ("opd",)),
    "grpo":         (False, True,  False, "grpo", ("grpo",)),
    "nft":          (False, True,  False, "grpo", ("grpo", "nft")),
    "grpo-guard":   (False, True,  False, "grpo", ("grpo", "grpo_guard")),
    "multi-reward": (False, False, False, "grpo", ("grpo", "multi_reward")),
    "cascade":      (False, False, True,  "grpo", ("grpo", "cascade")),
}


def test_the_registry_lists_every_method_module_and_builds_each():
    assert method_names() == sorted(TRAITS)
    assert sorted(METHODS) == sorted(TRAITS)
    for name, cls in METHODS.items():
        assert cls.name == name and cls is method_class(name)
        assert cls.__module__ == f"opd_bench.methods.{name.replace('-', '_')}"


@pytest.mark.parametrize("name", sorted(TRAITS))
def test_each_method_declares_its_traits(name):
    cls = method_class(name)
    got = (cls.uses_teachers, cls.single_task, cls.trains_tasks_in_sequence, cls.gradient_objective,
           tuple(cls.config_sections))
    assert got == TRAITS[name]
    cfg = build_config({})
    for section in cls.config_sections:   # a section the method owns is a section of the run config
        assert hasattr(cfg, section)


def test_traits_that_read_the_config():
    cfg = build_config({}, ["cascade.order=aesthetic,ocr", "grpo.beta=0", "nft.kl_beta=0.1"])
    assert method_class("cascade").task_order(cfg, ["ocr", "aesthetic"]) == ["aesthetic", "ocr"]
    assert method_class("multi-reward").task_order(cfg, ["ocr", "aesthetic"]) == ["ocr", "aesthetic"]
    assert not method_class("grpo").needs_reference(cfg)          # beta 0: no KL
    assert method_class("nft").needs_reference(cfg)               # nft.kl_beta > 0
    assert not method_class("opd").needs_reference(cfg)
    assert method_class("grpo").needs_reference(build_config({}, ["grpo.beta=0", "grpo.beta_per_task.ocr=0.04"]))
    mt_nft = build_config({}, ["grpo.objective=nft"])
    assert method_class("multi-reward").objective_label(mt_nft) == "DiffusionNFT"
    assert method_class("grpo-guard").objective_label(mt_nft) == "GRPO-Guard"   # the method's own objective wins
    with pytest.raises(ConfigError, match="grpo.group_size"):
        method_class("multi-reward").check(build_config({}, ["grpo.group_size=1"]), ["ocr"])
    method_class("opd").check(build_config({}, ["grpo.group_size=1"]), ["ocr"])   # opd has no groups
    with pytest.raises(ConfigError, match=r"grpo.objective: must be one of grpo, .*nft.* \(got 'ppo'\)"):
        method_class("cascade").check(build_config({}, ["grpo.objective=ppo"]), ["ocr"])
    with pytest.raises(UserError, match="one task at a time"):
        method_class("nft").check(cfg, ["ocr", "aesthetic"])


def test_no_method_name_is_tested_outside_its_own_file():
    """Every consumer asks the method (a trait), never compares its name: a new method needs no edit elsewhere."""
    names = "|".join(re.escape(n) for n in TRAITS)
    pattern = re.compile(rf"""method\s*(==|!=|in|not in)\s*[(\[]?\s*["']({names})["']""")
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "methods":
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) or "TEACHER_METHODS" in line or re.search(r"hasattr\([^)]*\"(reference|load_teacher|freeze_reference)\"", line):
                offenders.append(f"{path.relative_to(PACKAGE)}:{i}: {line.strip()}")
    assert not offenders, offenders


def test_a_bad_rl_objective_is_one_line_before_anything_runs(tmp_path, capsys):
    rc = main(["run", "--method", "multi-reward", "--tasks", "ocr,aesthetic", "--set", "grpo.objective=dmd",
               "--runs-dir", str(tmp_path), "--dry-run"])
    err = capsys.readouterr().err
    assert rc == 2 and "grpo.objective: must be one of" in err and len(err.strip().splitlines()) == 1


def test_config_validates_the_method_against_the_registry():
    with pytest.raises(ConfigError, match=r"method: must be one of .*opd.*\(got 'pretrain'\)"):
        build_config({"method": "pretrain"})
    assert build_config({"method": "sft-distill"}).method == "sft-distill"


def test_teachers_and_the_reference_resolve_in_one_place(tmp_path, tiny_model):
    from opd_bench.backbones import EmbeddedBackbone
    from opd_bench.backbones.sd3 import SD3Backbone
    from opd_bench.teachers import reference_policy, resolve_teacher, teacher_name

    cfg = build_config({}, [f"opd.teachers.ocr={tmp_path}"])
    assert teacher_name(cfg, "ocr") == str(tmp_path) and teacher_name(cfg, "geneval") == "teacher_geneval"
    assert resolve_teacher(cfg, "ocr") == tmp_path
    with pytest.raises(UserError, match="no teacher for task aesthetic: /no/such not found"):
        resolve_teacher(build_config({}, ["opd.teachers.aesthetic=/no/such"]), "aesthetic")
    # capabilities, not probes: the embedded model holds its reference as a frozen copy, SD3 as a LoRA state
    assert not EmbeddedBackbone.has_lora_reference and not EmbeddedBackbone.can_load_teacher
    assert SD3Backbone.has_lora_reference and SD3Backbone.can_load_teacher
    ref = reference_policy(tiny_model)
    assert ref is not tiny_model and not any(p.requires_grad for p in ref.parameters())


def test_budget_is_parsed_once_into_a_typed_value(tmp_path, capsys):
    assert parse_budget("640:nfe") == BudgetConfig(640.0, "nfe") and parse_budget("12") == BudgetConfig(12.0, "images")
    assert typing_units() == UNITS
    # --budget wins over --set budget.* (the run's own options come last), and lands in the config as given
    rc = main(["run", "--method", "grpo", "--tasks", "ocr", "--budget", "3:optimizer_steps", "--set",
               "budget.value=99", "--runs-dir", str(tmp_path), "--dry-run", "--no-recipe"])
    out = capsys.readouterr().out
    assert rc == 0 and "budget: 3 optimizer_steps" in out and "  value: 3.0\n  unit: optimizer_steps" in out


def typing_units():
    import typing

    return typing.get_args(typing.get_type_hints(BudgetConfig)["unit"])


# ----------------------------------------------------------------------------------------------- recipes (#20)


@pytest.fixture()
def recipes(tmp_path, monkeypatch):
    d = tmp_path / "recipes"
    d.mkdir()
    monkeypatch.setattr(plan, "RECIPES_DIR", d)
    return d


def _configs(*extra, config=None, recipes_on=True, overrides=()):
    from opd_bench.train import build_configs

    return build_configs(["grpo", "opd"], "ocr", 1, config, list(overrides), None, 0, *extra, recipes=recipes_on)


def test_no_recipe_file_leaves_every_config_as_before(recipes):
    for m in ("grpo", "opd"):
        old = load_config(None, [f"method={m}", "tasks=ocr", "seed=0"])
        old.name = "grpo-opd_ocr"
        new = [c for c in _configs() if c.method == m][0]
        assert to_flat_dict(new) == to_flat_dict(old)


def test_a_recipe_is_layered_between_default_and_config(recipes, tmp_path):
    (recipes / "grpo.yaml").write_text("# chosen by sweep\nextends: default.yaml\nmethod: grpo\n"
                                       "train: {lr: 3.0e-4}\ngrpo: {beta: 0.04, group_size: 4}\n")
    cfg_file = tmp_path / "mine.yaml"
    cfg_file.write_text("extends: default.yaml\ngrpo: {beta: 0.01}\n")
    by = {c.method: c for c in _configs()}
    assert by["grpo"].train.lr == 3e-4 and by["grpo"].grpo.beta == 0.04 and by["grpo"].grpo.group_size == 4
    assert by["opd"].train.lr == 1e-4                  # another method's recipe does not leak
    by = {c.method: c for c in _configs(config=str(cfg_file), overrides=["grpo.group_size=6"])}
    g = by["grpo"]
    # --config beats the recipe (beta) without resetting what it does not set (lr); --set beats both
    assert (g.train.lr, g.grpo.beta, g.grpo.group_size) == (3e-4, 0.01, 6)
    # a recipe written by a sweep over --config base.yaml keeps its tuned values under that same --config
    base = tmp_path / "base.yaml"
    base.write_text("extends: default.yaml\ntrain: {lr: 5.0e-5}\ngrpo: {beta: 0.02}\n")
    (recipes / "grpo.yaml").write_text(f"extends: {base}\nmethod: grpo\ntrain: {{lr: 3.0e-4}}\n")
    g = {c.method: c for c in _configs(config=str(base))}["grpo"]
    assert (g.train.lr, g.grpo.beta) == (3e-4, 0.02)
    assert {c.method: c for c in _configs(config=str(base))}["opd"].train.lr == 5e-5
    assert {c.method: c for c in _configs(config="default")}["grpo"].train.lr == 3e-4   # default.yaml is the bottom
    off = {c.method: c for c in _configs(recipes_on=False)}
    assert off["grpo"].train.lr == 1e-4 and off["grpo"].grpo.beta == 0.004


def test_dry_run_names_the_recipe_and_no_recipe_ignores_it(recipes, tmp_path, capsys):
    (recipes / "grpo.yaml").write_text("extends: default.yaml\nmethod: grpo\ntrain: {lr: 3.0e-4}\n")
    args = ["run", "--method", "grpo,opd", "--tasks", "ocr", "--runs-dir", str(tmp_path / "runs"), "--dry-run"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"recipe: {recipes / 'grpo.yaml'}; config: defaults" in out and "recipe: none; config: defaults" in out
    assert "lr: 0.0003" in out
    assert main(args + ["--no-recipe"]) == 0
    out = capsys.readouterr().out
    assert out.count("recipe: ignored (--no-recipe)") == 2 and "lr: 0.0003" not in out


# ----------------------------------------------------------------------------------------------- one file per method


TINY_METHOD = '''
"""A method added as one file: nothing else in the package names it."""
from opd_bench.methods.base import Method


class TinyMethod(Method):
    name = "tiny-method"
    config_sections = ("train",)

    @classmethod
    def objective_label(cls, cfg):
        return "nothing at all"

    def train_step(self, ctx):
        return {}
'''


def test_adding_a_method_is_adding_one_file(tmp_path):
    """A module dropped into the methods package (here: a folder added to its search path, so the checkout is not
    touched) is a method of ``run --help``, ``run --dry-run``, config validation and the runner's registry."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "tiny_method.py").write_text(TINY_METHOD)
    runs = tmp_path / "runs"
    code = textwrap.dedent(f"""
        import opd_bench.methods as m
        m.__path__.append({str(plugins)!r})
        from opd_bench.cli import main
        from opd_bench.config import build_config
        print("HELP", main(["run", "--help"]))
        print("DRY", main(["run", "--method", "tiny-method", "--tasks", "ocr", "--runs-dir", {str(runs)!r},
                           "--dry-run"]))
        print("CFG", build_config({{"method": "tiny-method"}}).method, m.METHODS["tiny-method"].__name__)
        print("BAD", main(["run", "--method", "tiny-methd", "--dry-run"]))
    """)
    env = dict(os.environ, COLUMNS="250", PYTHONPATH=str(PACKAGE.parent))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    out = p.stdout
    assert "HELP 0" in out and "tiny-method" in out.split("HELP 0")[0], p.stderr
    assert "DRY 0" in out and "- tiny-method seed 0" in out and "objective: nothing at all" in out, p.stderr
    assert "config sections: train" in out and "method: tiny-method" in out and not runs.exists()
    assert "CFG tiny-method TinyMethod" in out
    assert "BAD 2" in out and "unknown method 'tiny-methd'" in p.stderr and "tiny-method" in p.stderr
