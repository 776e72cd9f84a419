"""Every snippet of docs/integrations.md (the README's "Use p2p_marl in your codebase") runs as written.

Fenced ```python blocks are executed one by one, each in a fresh namespace; ```python requires=MODULE marks a
snippet that needs an optional extra and is skipped when MODULE is not installed. The BenchMARL command line of
the page is run with overrides appended that shrink it to two small iterations. The README's copy of the section
must equal the page, so that what is tested here is what a reader sees there.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "integrations.md"
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```$", re.S | re.M)
HEADING = re.compile(r"^#+ (.*)$", re.M)
BENCHMARL_COMMAND = "python -m p2p_marl.integrations.benchmarl"


def fenced_blocks(language: str) -> list[tuple[str, dict[str, str], str]]:
    """(the heading above, the info string's key=value tags, the code) of every block in ``language``."""
    text = DOC.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        words = match["info"].split()
        if not words or words[0] != language:
            continue
        headings = HEADING.findall(text, 0, match.start())
        tags = dict(word.split("=", 1) for word in words[1:])
        blocks.append((headings[-1] if headings else "top", tags, match["body"]))
    return blocks


PYTHON_SNIPPETS = fenced_blocks("python")


def test_readme_section_is_the_page():
    page = DOC.read_text()
    title = page.splitlines()[0]
    readme = (ROOT / "README.md").read_text()
    if title not in readme:
        pytest.skip(f"README.md has no '{title}' section yet")
    section = readme[readme.index(title):]
    next_section = re.search(r"^## ", section[len(title):], re.M)
    if next_section:
        section = section[:len(title) + next_section.start()]
    assert section.strip() == page.strip(), f"README.md's '{title}' differs from {DOC.relative_to(ROOT)}"


def test_the_page_has_a_snippet_per_ecosystem():
    sections = " ".join(heading for heading, _, _ in PYTHON_SNIPPETS)
    for ecosystem in ("PettingZoo", "gymnasium", "Stable-Baselines3", "RLlib", "TorchRL", "BenchMARL"):
        assert ecosystem in sections, f"docs/integrations.md has no python snippet under a {ecosystem} heading"


@pytest.mark.parametrize("heading, tags, code", PYTHON_SNIPPETS,
                         ids=[f"{i}-{heading.split(':')[0]}" for i, (heading, _, _) in enumerate(PYTHON_SNIPPETS)])
def test_python_snippet_runs(heading, tags, code, tmp_path, monkeypatch):
    if "requires" in tags:
        pytest.importorskip(tags["requires"])
    monkeypatch.chdir(tmp_path)  # whatever a snippet writes (logs, checkpoints) lands in the test's folder
    try:
        exec(compile(code, f"{DOC.name}: {heading}", "exec"), {"__name__": "__docs__"})
    finally:  # a snippet that fails before its ray.shutdown() must not leave Ray running for the next test
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()


def test_benchmarl_command_line_runs(tmp_path):
    pytest.importorskip("benchmarl")
    commands = [" ".join(line.strip().rstrip("\\") for line in code.splitlines())
                for _, _, code in fenced_blocks("bash") if code.startswith(BENCHMARL_COMMAND)]
    assert len(commands) == 1, f"expected one '{BENCHMARL_COMMAND}' block in {DOC.name}, found {len(commands)}"
    argv = [sys.executable, *shlex.split(commands[0])[1:]]
    # Later Hydra overrides of the same key win: two iterations of 96 frames, no evaluation.
    shrink = ["experiment.max_n_iters=2", "experiment.max_n_frames=null",
              "experiment.on_policy_collected_frames_per_batch=96", "experiment.on_policy_n_envs_per_worker=2",
              "experiment.on_policy_minibatch_size=48", "experiment.on_policy_n_minibatch_iters=1",
              "experiment.evaluation=false", f"hydra.run.dir={tmp_path}"]
    result = subprocess.run(argv + shrink, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    scalars = list(tmp_path.glob("mappo_community_10_*/*/scalars/collection_reward_episode_reward_mean.csv"))
    assert len(scalars) == 1, sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))[:40]
    assert len(scalars[0].read_text().splitlines()) == 2  # one logged value per iteration
