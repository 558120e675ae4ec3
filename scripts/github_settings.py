"""Check a GitHub repository's settings against .github/environments.yml: what keeps every
credential of the delivery pipeline away from code nobody reviewed.

    python3 -m scripts.github_settings check OWNER/REPO      # as a repository admin, with gh

The workflows cannot keep a secret from a pull request (a branch of this repository runs its
own copy of them); GitHub's settings can, so this reads them through the REST API (`gh api`):
no repository or organization secret reaches the repository; each environment exists with
the reviewers (and prevent self-review) and deployment branches the file says, and holds no
secret it does not list; an environment the file does not name holds no secret (the old
prod-rollback, for one); the workflows' token reads by default and cannot approve pull
requests; each deploying branch takes changes only through an approved pull request (code
owners, stale approvals dismissed, the newest push approved by someone else), no force push
or deletion, and only a GitHub App other than GitHub Actions may bypass that.
Exit 0: all as declared; 1: the differences, one a line; 2: bad input or no access.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

MANIFEST = Path(__file__).resolve().parents[1] / ".github/environments.yml"
# The GitHub Actions app: a ruleset that lets it bypass lets every workflow of every branch
# push (GITHUB_TOKEN with contents: write).
GITHUB_ACTIONS_APP_ID = 15368


class ApiError(Exception):
    def __init__(self, path: str, status: int | None, message: str):
        super().__init__(f"GET {path}: {message}")
        self.status = status


Api = Callable[[str], Any]


def gh_api(path: str) -> Any:
    result = subprocess.run(["gh", "api", "-H", "Accept: application/vnd.github+json", path],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        status = re.search(r"HTTP (\d{3})", result.stderr)  # gh: "Not Found (HTTP 404)"
        raise ApiError(path, int(status[1]) if status else None,
                       result.stderr.strip() or "gh api failed")
    return json.loads(result.stdout or "null")


def names(listing: dict | None, key: str = "secrets") -> set[str]:
    return {item["name"] for item in (listing or {}).get(key) or []}


def secret_problems(repo: str, manifest: dict, api: Api) -> list[str]:
    problems = []
    allowed = set(manifest.get("repository_secrets") or [])
    if extra := sorted(names(api(f"repos/{repo}/actions/secrets?per_page=100")) - allowed):
        problems.append(f"repository secrets {extra} reach every branch's workflows: move "
                        "each into its environment (gh secret delete NAME)")
    if shared := sorted(names(api(f"repos/{repo}/actions/organization-secrets?per_page=100"))):
        problems.append(f"organization secrets {shared} reach this repository's every branch: "
                        "take the repository out of their access list")
    return problems


def environment_problems(repo: str, manifest: dict, api: Api) -> list[str]:
    problems = []
    declared = manifest.get("environments") or {}
    existing = {env["name"]: env for env in
                (api(f"repos/{repo}/environments?per_page=100") or {}).get("environments") or []}
    for name in sorted(set(existing) - set(declared)):
        if held := sorted(names(api(f"repos/{repo}/environments/{name}/secrets?per_page=100"))):
            problems.append(f"environment {name} is not declared and holds {held}: delete it "
                            f"(gh api -X DELETE repos/{repo}/environments/{name})")
    for name, spec in declared.items():
        environment = existing.get(name)
        if environment is None:
            problems.append(f"environment {name} is missing")
            continue
        problems += _reviewer_problems(name, spec, environment)
        problems += _branch_policy_problems(repo, name, spec, environment, api)
        held = names(api(f"repos/{repo}/environments/{name}/secrets?per_page=100"))
        if extra := sorted(held - set(spec.get("secrets") or {})):
            problems.append(f"environment {name} holds {extra}, which it should not")
    return problems


def _reviewer_problems(name: str, spec: dict, environment: dict) -> list[str]:
    """An environment declared with reviewers has them, and none approves their own run."""
    if spec.get("reviewers") != "required":
        return []
    rules = {rule["type"]: rule for rule in environment.get("protection_rules") or []}
    reviewers = rules.get("required_reviewers")
    if reviewers is None or not reviewers.get("reviewers"):
        return [f"environment {name} has no required reviewers"]
    if reviewers.get("prevent_self_review") is not True:
        return [f"environment {name}: prevent self-review is off, so whoever starts a run "
                "can approve it"]
    return []


def _branch_policy_problems(repo: str, name: str, spec: dict, environment: dict,
                            api: Api) -> list[str]:
    """Only the declared branches may deploy to the environment."""
    branches = spec.get("branches")
    if branches == "all":
        return []
    policy = environment.get("deployment_branch_policy")
    if not policy or not policy.get("custom_branch_policies"):
        return [f"environment {name}: deployment branches must be exactly {branches}, not "
                f"{'any branch' if not policy else 'protected'}"]
    listed = api(f"repos/{repo}/environments/{name}/deployment-branch-policies"
                 "?per_page=100") or {}
    found = {(p["name"], p.get("type", "branch")) for p in listed.get("branch_policies") or []}
    if found != {(branch, "branch") for branch in branches}:
        return [f"environment {name}: deployment branches are {sorted(found)}, not {branches}"]
    return []


def actions_problems(repo: str, api: Api) -> list[str]:
    settings = api(f"repos/{repo}/actions/permissions/workflow") or {}
    problems = []
    if settings.get("default_workflow_permissions") != "read":
        problems.append("Actions: the workflows' token must default to read (Settings → "
                        "Actions → General → Workflow permissions)")
    if settings.get("can_approve_pull_request_reviews"):
        problems.append("Actions: GitHub Actions may approve pull requests, so a workflow's "
                        "approval could merge one: turn it off")
    return problems


def branch_problems(repo: str, manifest: dict, api: Api) -> list[str]:
    problems = []
    for branch in manifest.get("branches") or {}:
        rules = api(f"repos/{repo}/rules/branches/{branch}") or []
        by_type = {rule["type"]: rule.get("parameters") or {} for rule in rules}
        problems += _pull_request_problems(branch, by_type.get("pull_request"))
        for rule in ("non_fast_forward", "deletion", "required_status_checks"):
            if rule not in by_type:
                problems.append(f"branch {branch}: no {rule} rule")
        problems += _bypass_problems(repo, branch, rules, api)
    return problems


def _pull_request_problems(branch: str, review: dict | None) -> list[str]:
    """A change reaches the branch through a reviewed pull request only."""
    if review is None:
        return [f"branch {branch}: no ruleset requires a pull request"]
    problems = [f"branch {branch}: the pull request rule needs {key}"
                for key in ("require_code_owner_review", "dismiss_stale_reviews_on_push",
                            "require_last_push_approval") if review.get(key) is not True]
    if (review.get("required_approving_review_count") or 0) < 1:
        problems.append(f"branch {branch}: a pull request needs at least one approval")
    return problems


def _bypass_problems(repo: str, branch: str, rules: list, api: Api) -> list[str]:
    """Nobody bypasses the branch's rulesets but the rollback App."""
    problems = []
    for ruleset in sorted({rule["ruleset_id"] for rule in rules if "ruleset_id" in rule}):
        actors = (api(f"repos/{repo}/rulesets/{ruleset}") or {}).get("bypass_actors") or []
        for actor in actors:
            if actor.get("actor_type") != "Integration":
                problems.append(f"branch {branch}: ruleset {ruleset} lets a "
                                f"{actor.get('actor_type')} bypass it; only the rollback "
                                "App may")
            elif actor.get("actor_id") == GITHUB_ACTIONS_APP_ID:
                problems.append(f"branch {branch}: ruleset {ruleset} lets GitHub Actions "
                                "bypass it, so any branch's workflow can push here")
    return problems


def check(repo: str, manifest: dict, api: Api = gh_api) -> list[str]:
    return [*secret_problems(repo, manifest, api), *environment_problems(repo, manifest, api),
            *actions_problems(repo, api), *branch_problems(repo, manifest, api)]


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "check" or argv[1].count("/") != 1:
        print("usage: python3 -m scripts.github_settings check OWNER/REPO", file=sys.stderr)
        return 2
    try:
        problems = check(argv[1], yaml.safe_load(MANIFEST.read_text()))
    except ApiError as error:
        hint = " (reading secrets and rulesets needs a repository admin's gh login)" \
            if error.status in (403, 404) else ""
        print(f"error: {error}{hint}", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"{argv[1]}: GitHub's side matches .github/environments.yml")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
