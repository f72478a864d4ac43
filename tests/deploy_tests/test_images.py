"""The image build files, checked without a builder (there is no Docker engine here): pinned bases,
a non-root numeric user in every final stage, no remote ADD, no compilers shipped, pip without a cache,
a build context that holds exactly what `pip install .` needs, and a package built from that context
that holds every module. The agent image installs the package without its dependencies, so the agent
must run on the standard library alone: that is checked by importing it without site-packages."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from deploy_tests.dockerfiles import IgnoreRules, Stage, parse
from deploy_tests.manifests import REPO, Rendered

pytestmark = pytest.mark.timeout(60)

DOCKER = REPO / "deploy" / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
# Built from the repository as context; minio.Dockerfile needs none.
WITH_CONTEXT = ("runner.Dockerfile", "agent.Dockerfile")
PACKAGES = ("runner", "agent", "lsp_server")
COMPILERS = re.compile(r"(gcc|g\+\+|clang|build-essential|cc|cpp|[\w.+-]+-dev)(-[\d.]+)?")
_TAG = re.compile(r"^[a-z0-9][a-z0-9._/-]*:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$")


def _stages(name: str) -> list[Stage]:
    return parse(DOCKER / name)


def test_every_image_has_a_build_file() -> None:
    assert [p.name for p in DOCKERFILES] == ["agent.Dockerfile", "minio.Dockerfile", "runner.Dockerfile"]


@pytest.mark.parametrize("dockerfile", [p.name for p in DOCKERFILES])
def test_every_base_image_is_pinned_to_a_version_tag(dockerfile: str) -> None:
    stages = _stages(dockerfile)
    earlier: set[str] = set()
    for stage in stages:
        if stage.base in earlier:
            continue
        match = _TAG.match(stage.base)
        assert match, f"{dockerfile}: FROM {stage.base} names no tag (or uses a variable)"
        tag = match["tag"]
        assert tag != "latest" and re.search(r"\d", tag), f"{dockerfile}: FROM {stage.base} is not a version"
        if stage.name:
            earlier.add(stage.name)
    # The Python images must agree: the runner's virtual environment is copied across stages.
    pythons = {s.base for s in stages if s.base.startswith("python:")}
    assert len(pythons) <= 1, pythons


@pytest.mark.parametrize("dockerfile", [p.name for p in DOCKERFILES])
def test_the_final_stage_runs_as_a_numeric_non_root_user(dockerfile: str, dev: Rendered) -> None:
    final = _stages(dockerfile)[-1]
    users = final.of("USER")
    assert users, f"{dockerfile}: the final stage sets no USER, so it runs as root"
    uid, _, gid = users[-1].value.partition(":")
    assert uid.isdigit() and int(uid) != 0, f"{dockerfile}: USER {users[-1].value} (runAsNonRoot needs a number)"
    assert gid.isdigit() and int(gid) != 0, f"{dockerfile}: USER {users[-1].value} needs a non-root group"
    # The pods run as the image's user, so files the image owns stay theirs.
    for t in dev.pod_templates():
        assert t.spec["securityContext"]["runAsUser"] == int(uid)


@pytest.mark.parametrize("dockerfile", [p.name for p in DOCKERFILES])
def test_nothing_is_fetched_by_add_and_no_compiler_is_shipped(dockerfile: str) -> None:
    stages = _stages(dockerfile)
    for stage in stages:
        for add in stage.of("ADD"):
            _, args = add.flags_and_args()
            assert not any("://" in a or a.startswith("git@") for a in args[:-1]), f"{dockerfile}:{add.line}"
        for run in stage.of("RUN"):
            if "pip install" in run.value or "pip wheel" in run.value:
                assert "--no-cache-dir" in run.value, f"{dockerfile}:{run.line}: pip keeps its cache in the image"
            if "apt-get install" in run.value:
                assert "--no-install-recommends" in run.value and "rm -rf /var/lib/apt/lists/*" in run.value
    for run in stages[-1].of("RUN"):
        for package in _apt_packages(run.value):
            assert not COMPILERS.fullmatch(package), f"{dockerfile}:{run.line}: {package} in the final image"


def _apt_packages(command: str) -> list[str]:
    if "apt-get install" not in command:
        return []
    words = command.split("apt-get install", 1)[1].split("&&", 1)[0].split()
    return [w for w in words if not w.startswith("-")]


def test_apt_packages_are_read_from_the_install_command() -> None:
    assert _apt_packages("apt-get update && apt-get install --yes gcc make && rm -rf x") == ["gcc", "make"]
    assert [p for p in ("gcc-12", "libffi-dev", "git", "make", "python3-dev") if COMPILERS.fullmatch(p)] == [
        "gcc-12", "libffi-dev", "python3-dev"]


def test_the_runner_image_runs_the_venv_and_has_no_entrypoint() -> None:
    final = _stages("runner.Dockerfile")[-1]
    env = " ".join(i.value for i in final.of("ENV"))
    # `codex-sys` (the Deployments) and `python` (the fetch init container) must be the venv's.
    assert "PATH=/opt/codex-sys/bin:$PATH" in env
    assert not final.of("ENTRYPOINT"), "the Deployments and the executor give their own commands"
    assert not _stages("agent.Dockerfile")[-1].of("ENTRYPOINT")
    assert "codex-sys = \"runner.cli.main:main\"" in (REPO / "pyproject.toml").read_text()


def test_the_agent_image_has_git_and_installs_no_dependencies() -> None:
    final = _stages("agent.Dockerfile")[-1]
    installs = " ".join(r.value for r in final.of("RUN") if "apt-get install" in r.value).split()
    assert "git" in installs, "the agent computes its diff with git"
    pip = [r.value for r in final.of("RUN") if "pip install" in r.value]
    assert pip and all("--no-deps" in p for p in pip)


def test_the_minio_image_builds_the_commit_the_tests_run() -> None:
    script = (REPO / "scripts" / "build_minio.sh").read_text()
    pinned = re.search(r'^MINIO_VERSION="\$\{MINIO_VERSION:-([^}]+)\}"', script, re.MULTILINE)
    assert pinned, "scripts/build_minio.sh no longer pins MINIO_VERSION the way this test reads it"
    args = [a.value for s in _stages("minio.Dockerfile") for a in s.of("ARG")]
    assert f"MINIO_VERSION={pinned[1]}" in args


def test_both_context_images_share_one_ignore_file() -> None:
    texts = {name: (DOCKER / f"{name}.dockerignore").read_text() for name in WITH_CONTEXT}
    assert len(set(texts.values())) == 1


@pytest.fixture(scope="module")
def context_files() -> list[str]:
    return IgnoreRules.load(DOCKER / "runner.Dockerfile.dockerignore").context(REPO)


def test_the_build_context_holds_what_pip_install_needs_and_nothing_else(context_files: list[str]) -> None:
    tops = {f.split("/", 1)[0] for f in context_files}
    assert tops == {"pyproject.toml", "README.md", "LICENSE", *PACKAGES}
    assert not [f for f in context_files if "__pycache__" in f or f.endswith(".pyc")]
    tracked = subprocess.run(["git", "ls-files", *PACKAGES], cwd=REPO, capture_output=True, text=True,
                             check=True, timeout=30).stdout.split()
    missing = set(tracked) - set(context_files)
    assert not missing, f"tracked files the image would not get: {sorted(missing)[:5]}"
    for dockerfile in WITH_CONTEXT:
        for stage in _stages(dockerfile):
            for copy in stage.of("COPY"):
                flags, args = copy.flags_and_args()
                if "from" in flags:
                    continue
                for source in args[:-1]:
                    assert (REPO / source).exists(), f"{dockerfile}:{copy.line}: {source} does not exist"
                    assert any(f == source or f.startswith(source + "/") for f in context_files), (
                        f"{dockerfile}:{copy.line}: {source} is not in the build context")


@pytest.mark.timeout(300)
def test_the_package_built_from_the_context_holds_every_module(context_files: list[str], tmp_path: Path) -> None:
    """`pip wheel .` over exactly the files the builder would see (offline: the project's build backend
    from this environment), as the images' build stages do."""
    context = tmp_path / "context"
    for relative in context_files:
        target = context / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, target)
    out = tmp_path / "wheels"
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-cache-dir", "--no-deps", "--no-build-isolation",
                           "--wheel-dir", str(out), str(context)], capture_output=True, text=True, env=env,
                          timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    [wheel] = out.glob("codex_sys-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    expected = {f for f in context_files if f.split("/", 1)[0] in PACKAGES
                and (f.endswith((".py", ".pyi")) or f.endswith("py.typed") or "/scenarios/" in f)}
    assert expected - shipped == set(), sorted(expected - shipped)[:5]
    for must in ("agent/pod.py", "runner/snapshots/fetch.py", "runner/cli/main.py"):
        assert must in shipped, must


def test_the_agent_runs_on_the_standard_library_alone(tmp_path: Path) -> None:
    """The agent image installs the package with --no-deps: importing every agent module must need
    nothing outside the standard library. `-S` leaves site-packages (and everything installed) out."""
    script = (
        "import importlib, pkgutil, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "import agent\n"
        "mods = [m.name for m in pkgutil.walk_packages(agent.__path__, 'agent.') if m.name != 'agent.__main__']\n"
        "for name in mods: importlib.import_module(name)\n"
        "assert 'agent.pod' in mods, mods\n"
        "tops = {m.split('.')[0] for m in sys.modules}\n"
        "third = sorted(tops - set(sys.stdlib_module_names) - {'agent', '__main__'})\n"
        "assert not third, third\n"
        "print(len(mods))\n")
    done = subprocess.run([sys.executable, "-S", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout) >= 15
