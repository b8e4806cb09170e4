"""Packaging and workflow-catalog conventions: pyproject.toml declares what the code imports,
the test tools sit in an extra, requirements.txt pins it all and the lock pins (with hashes)
what requirements.txt asks for; config/README.md covers every config section; every report()
output has a caption that exists."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: Files copied to boards and run there with the board's own Python and runtimes.
BOARD_ONLY = {"remote_app.py", "remote_runner.py"}
TEST_TOOLS = {"pytest", "ruff", "snakefmt"}


def _name(requirement: str) -> str:
    """Normalised distribution name of a requirement string (PEP 503)."""
    name = re.split(r"[\s<>=!~;\[@]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    """name -> version of the ``name==version`` lines of a requirements file."""
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;\\]+)", line)
        if match:
            pins[_name(match.group(1))] = match.group(2)
    return pins


TORCH_BACKEND = ROOT / "src" / "edgeprune" / "compression" / "torch_backend"


def _imported_modules(torch_backend: bool = False) -> set[str]:
    """Top-level modules imported anywhere in the package and the workflow scripts; with
    ``torch_backend``, only those of the PyTorch backend (the ``torch`` extra), otherwise those
    of everything else."""
    files = [p for p in (ROOT / "src" / "edgeprune").rglob("*.py") if p.name not in BOARD_ONLY]
    files += list((ROOT / "workflow" / "scripts").glob("*.py"))
    files = [p for p in files if (TORCH_BACKEND in p.parents) == torch_backend]
    found = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"edgeprune"}


def _undeclared(modules: set[str], declared: set[str]) -> dict[str, list[str]]:
    owners = packages_distributions()
    missing = {}
    for module in sorted(modules):
        dists = {_name(d) for d in owners.get(module, [module])}
        if not dists & declared:
            missing[module] = sorted(dists)
    return missing


def test_pyproject_declares_every_imported_distribution() -> None:
    declared = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    missing = _undeclared(_imported_modules(), declared)
    assert not missing, f"imported but not in pyproject.toml dependencies: {missing}"
    assert "snakemake" in declared  # the workflow (common.smk) imports it at parse time
    assert "seaborn" not in declared and "opencv-python" not in declared
    # PyTorch is the `torch` extra: only the PyTorch backend imports it.
    extra = {_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["torch"]}
    assert "torch" in extra and "torch" not in declared
    assert "torch" in _imported_modules(torch_backend=True)
    missing = _undeclared(_imported_modules(torch_backend=True), declared | extra)
    assert not missing, f"imported by the torch backend but in no extra: {missing}"


def test_test_tools_are_an_extra_not_runtime_dependencies() -> None:
    runtime = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    extra = {_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["test"]}
    assert TEST_TOOLS <= extra and not TEST_TOOLS & runtime


def test_requirements_pin_the_declared_dependencies_and_the_lock_pins_them_with_hashes() -> None:
    wanted = _pins(ROOT / "envs" / "requirements.txt")
    extras = PYPROJECT["project"]["optional-dependencies"].values()
    declared = {_name(r) for r in PYPROJECT["project"]["dependencies"]} | {
        _name(r) for extra in extras for r in extra}
    assert declared <= set(wanted), f"not pinned: {sorted(declared - set(wanted))}"
    lock_text = (ROOT / "envs" / "requirements.lock").read_text()
    locked = _pins(ROOT / "envs" / "requirements.lock")
    for name, version in wanted.items():
        assert name in locked, f"{name} is in requirements.txt but not in the lock: run make lock"
        # a local version (+cpu) pins the same release
        assert locked[name].split("+")[0] == version.split("+")[0], (
            f"{name}: requirements.txt says {version}, the lock {locked[name]}: run make lock")
    entries = re.findall(r"^\S+==\S+((?:\s+\\\n\s+--hash=sha256:[0-9a-f]{64})+)", lock_text,
                         re.M)
    assert len(entries) == len(locked), "every locked package needs at least one --hash"
    assert "--extra-index-url" not in lock_text and "--find-links" not in lock_text


def test_conda_env_installs_the_current_lock() -> None:
    import hashlib

    env_file = ROOT / "envs" / "edgeprune.yaml"
    text = env_file.read_text()
    env = yaml.safe_load(text)
    pip_lines = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip_lines == ["-r ${EDGEPRUNE_ROOT}/envs/requirements.lock"]
    digest = hashlib.sha256((ROOT / "envs" / "requirements.lock").read_bytes()).hexdigest()
    assert f"# lock sha256: {digest}" in text, "the env file names an old lock: run make lock"
    deploy = (ROOT / "envs" / "edgeprune.post-deploy.sh").read_text()
    assert 'pip install --no-deps "$EDGEPRUNE_ROOT"' in deploy
    assert 'os.environ["EDGEPRUNE_ROOT"] = workflow.basedir' in (
        ROOT / "workflow" / "rules" / "common.smk").read_text()


def test_config_readme_covers_every_section() -> None:
    """Every top-level section has a heading, and every key of a section is named."""
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    readme = (ROOT / "config" / "README.md").read_text()
    headings = " ".join(re.findall(r"^#+ .*", readme, re.M))
    missing = [k for k in schema["properties"] if f"`{k}`" not in headings
               and f"- `{k}`" not in readme]
    assert not missing, f"config/README.md has no section for: {missing}"
    keys = [f"{section}.{key}" for section, node in schema["properties"].items()
            for key in node.get("properties", {}) if f"`{key}`" not in readme]
    assert not keys, f"config/README.md does not name: {keys}"


def test_catalog_file() -> None:
    catalog = yaml.safe_load((ROOT / ".snakemake-workflow-catalog.yml").read_text())
    usage = catalog["usage"]
    assert usage["report"] is True
    assert set(usage["software-stack-deployment"]) == {"conda", "singularity",
                                                      "singularity+conda"}
    assert usage["mandatory-flags"]["flags"]


def _report_calls(text: str) -> list[str]:
    """The argument text of every ``report(...)`` call."""
    calls = []
    for match in re.finditer(r"\breport\(", text):
        depth, i = 1, match.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        calls.append(text[match.end():i - 1])
    return calls


def test_every_report_output_has_a_caption_that_exists() -> None:
    rules = ROOT / "workflow" / "rules"
    calls = [(path, call) for path in sorted(rules.glob("*.smk"))
             for call in _report_calls(path.read_text())]
    assert len(calls) >= 7
    for path, call in calls:
        match = re.search(r'caption=f?"\.\./report/(?:\{caption\}|([\w.]+))"', call)
        assert match, f"{path.name}: report() without a caption: report({call})"
    captions = set(re.findall(r'"(\w+\.rst)"', "".join(p.read_text()
                                                        for p in rules.glob("*.smk"))))
    for name in captions | {"workflow.rst"}:
        assert (ROOT / "workflow" / "report" / name).is_file(), name
    assert 'report: "workflow/report/workflow.rst"' in (ROOT / "Snakefile").read_text()
    # both papers and the deployment chooser are in the report
    text = "".join(p.read_text() for p in rules.glob("*.smk"))
    for category in ("Paper 1", "Paper 2", "Deployment"):
        assert f'category="{category}' in text
