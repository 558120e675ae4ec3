"""scripts/github_settings.py against GitHub's REST answers as the API documents them
(docs.github.com/rest: actions/secrets, environments, deployment-branch-policies,
actions/permissions/workflow, rules/branches, rulesets), served by a dictionary here and by a
stand-in `gh` for the command line (test scaffolding: no request leaves the machine). A
repository set up as .github/environments.yml says passes; each way of leaving a credential
within reach of unreviewed code is named."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scripts.github_settings import GITHUB_ACTIONS_APP_ID, check

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = yaml.safe_load((ROOT / ".github/environments.yml").read_text())
REPO = "eduaiia/aiia-infra"
ROLLBACK_APP_ID = 424242


def answers_as_declared() -> dict[str, object]:
    """What the API answers for a repository set up as the runbook says."""
    answers: dict[str, object] = {
        f"repos/{REPO}/actions/secrets?per_page=100": {"total_count": 0, "secrets": []},
        f"repos/{REPO}/actions/organization-secrets?per_page=100": {"total_count": 0,
                                                                    "secrets": []},
        f"repos/{REPO}/actions/permissions/workflow": {
            "default_workflow_permissions": "read", "can_approve_pull_request_reviews": False},
    }
    environments = []
    for name, spec in MANIFEST["environments"].items():
        rules = []
        if spec["reviewers"] == "required":
            rules.append({"id": 1, "type": "required_reviewers", "prevent_self_review": True,
                          "reviewers": [{"type": "Team", "reviewer": {"slug": "ops"}}]})
        policy = None
        if spec["branches"] != "all":
            rules.append({"id": 2, "type": "branch_policy"})
            policy = {"protected_branches": False, "custom_branch_policies": True}
            answers[f"repos/{REPO}/environments/{name}/deployment-branch-policies"
                    "?per_page=100"] = {"total_count": len(spec["branches"]),
                                        "branch_policies": [{"name": branch, "type": "branch"}
                                                            for branch in spec["branches"]]}
        environments.append({"name": name, "protection_rules": rules,
                             "deployment_branch_policy": policy})
        answers[f"repos/{REPO}/environments/{name}/secrets?per_page=100"] = {
            "total_count": len(spec["secrets"]),
            "secrets": [{"name": secret} for secret in spec["secrets"]]}
    answers[f"repos/{REPO}/environments?per_page=100"] = {"total_count": len(environments),
                                                          "environments": environments}
    for index, branch in enumerate(MANIFEST["branches"], 1):
        answers[f"repos/{REPO}/rules/branches/{branch}"] = [
            {"type": "pull_request", "ruleset_id": index, "parameters": {
                "required_approving_review_count": 1, "require_code_owner_review": True,
                "dismiss_stale_reviews_on_push": True, "require_last_push_approval": True,
                "required_review_thread_resolution": False}},
            {"type": "non_fast_forward", "ruleset_id": index},
            {"type": "deletion", "ruleset_id": index},
            {"type": "required_status_checks", "ruleset_id": index,
             "parameters": {"required_status_checks": [{"context": "fast"}]}},
        ]
        answers[f"repos/{REPO}/rulesets/{index}"] = {"id": index, "bypass_actors": [
            {"actor_id": ROLLBACK_APP_ID + index, "actor_type": "Integration",
             "bypass_mode": "always"}]}
    return answers


def api_of(answers: dict[str, object]):
    def api(path: str) -> object:
        return copy.deepcopy(answers[path])
    return api


def environment(answers: dict, name: str) -> dict:
    listing = answers[f"repos/{REPO}/environments?per_page=100"]
    return next(env for env in listing["environments"] if env["name"] == name)


def test_a_repository_set_up_as_declared_passes():
    assert check(REPO, MANIFEST, api_of(answers_as_declared())) == []


def test_the_settings_c1_was_made_of_are_each_named():
    """Review C1 as it stood: the key and token as repository secrets, prod-rollback
    holding them with no reviewer, staging with no reviewer, GitHub Actions able to push
    main."""
    answers = answers_as_declared()
    answers[f"repos/{REPO}/actions/secrets?per_page=100"] = {"total_count": 2, "secrets": [
        {"name": "DEPLOY_SSH_KEY"}, {"name": "PULUMI_ACCESS_TOKEN"}]}
    listing = answers[f"repos/{REPO}/environments?per_page=100"]
    listing["environments"].append({"name": "prod-rollback", "protection_rules": [],
                                     "deployment_branch_policy": None})
    answers[f"repos/{REPO}/environments/prod-rollback/secrets?per_page=100"] = {
        "total_count": 1, "secrets": [{"name": "DEPLOY_SSH_KEY"}]}
    environment(answers, "staging")["protection_rules"] = [{"id": 2, "type": "branch_policy"}]
    answers[f"repos/{REPO}/rulesets/1"]["bypass_actors"].append(
        {"actor_id": GITHUB_ACTIONS_APP_ID, "actor_type": "Integration",
         "bypass_mode": "always"})
    assert check(REPO, MANIFEST, api_of(answers)) == [
        "repository secrets ['DEPLOY_SSH_KEY', 'PULUMI_ACCESS_TOKEN'] reach every branch's "
        "workflows: move each into its environment (gh secret delete NAME)",
        "environment prod-rollback is not declared and holds ['DEPLOY_SSH_KEY']: delete it "
        f"(gh api -X DELETE repos/{REPO}/environments/prod-rollback)",
        "environment staging has no required reviewers",
        "branch main: ruleset 1 lets GitHub Actions bypass it, so any branch's workflow can "
        "push here",
    ]


def test_weaker_environments_and_rules_are_each_named():
    answers = answers_as_declared()
    environment(answers, "prod")["protection_rules"][0]["prevent_self_review"] = False
    environment(answers, "notify")["deployment_branch_policy"] = None
    answers[f"repos/{REPO}/environments/propose-release/deployment-branch-policies"
            "?per_page=100"]["branch_policies"].append({"name": "*", "type": "branch"})
    answers[f"repos/{REPO}/environments/preview-prod/secrets?per_page=100"][
        "secrets"].append({"name": "DEPLOY_SSH_KEY"})
    listing = answers[f"repos/{REPO}/environments?per_page=100"]
    listing["environments"] = [env for env in listing["environments"]
                               if env["name"] != "preview-staging"]
    answers[f"repos/{REPO}/actions/organization-secrets?per_page=100"] = {
        "total_count": 1, "secrets": [{"name": "NPM_TOKEN"}]}
    answers[f"repos/{REPO}/actions/permissions/workflow"] = {
        "default_workflow_permissions": "write", "can_approve_pull_request_reviews": True}
    rules = answers[f"repos/{REPO}/rules/branches/staging"]
    rules[0]["parameters"]["require_code_owner_review"] = False
    answers[f"repos/{REPO}/rules/branches/staging"] = [r for r in rules
                                                       if r["type"] != "deletion"]
    answers[f"repos/{REPO}/rulesets/2"]["bypass_actors"] = [
        {"actor_id": 5, "actor_type": "RepositoryRole", "bypass_mode": "always"}]
    assert check(REPO, MANIFEST, api_of(answers)) == [
        "organization secrets ['NPM_TOKEN'] reach this repository's every branch: take the "
        "repository out of their access list",
        "environment preview-prod holds ['DEPLOY_SSH_KEY'], which it should not",
        "environment preview-staging is missing",
        "environment prod: prevent self-review is off, so whoever starts a run can approve it",
        "environment notify: deployment branches must be exactly ['main', 'staging'], not "
        "any branch",
        "environment propose-release: deployment branches are [('*', 'branch'), ('main', "
        "'branch')], not ['main']",
        "Actions: the workflows' token must default to read (Settings → Actions → General → "
        "Workflow permissions)",
        "Actions: GitHub Actions may approve pull requests, so a workflow's approval could "
        "merge one: turn it off",
        "branch staging: the pull request rule needs require_code_owner_review",
        "branch staging: no deletion rule",
        "branch staging: ruleset 2 lets a RepositoryRole bypass it; only the rollback App may",
    ]


def test_the_command_line_reads_through_gh_and_says_what_differs(tmp_path):
    """A stand-in `gh` (test scaffolding) answers `gh api PATH` from the dictionary above."""
    answers = answers_as_declared()
    answers[f"repos/{REPO}/actions/secrets?per_page=100"] = {"total_count": 1, "secrets": [
        {"name": "SLACK_WEBHOOK_URL"}]}
    (tmp_path / "answers.json").write_text(json.dumps(answers))
    gh = tmp_path / "bin/gh"
    gh.parent.mkdir()
    gh.write_text(f"#!{sys.executable}\n# test stand-in for `gh api`\nimport json, sys\n"
                  f"answers = json.load(open({str(tmp_path / 'answers.json')!r}))\n"
                  "path = sys.argv[-1]\n"
                  "if path not in answers:\n"
                  "    sys.exit(print('gh: Not Found (HTTP 404)', file=sys.stderr) or 1)\n"
                  "print(json.dumps(answers[path]))\n")
    gh.chmod(0o755)
    env = {**os.environ, "PATH": f"{gh.parent}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    run = [sys.executable, "-m", "scripts.github_settings", "check"]
    differs = subprocess.run([*run, REPO], env=env, capture_output=True, text=True, timeout=60)
    assert differs.returncode == 1, differs.stderr
    assert differs.stdout.startswith("repository secrets ['SLACK_WEBHOOK_URL'] reach every")
    unknown = subprocess.run([*run, "eduaiia/other"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert unknown.returncode == 2
    assert "needs a repository admin's gh login" in unknown.stderr
    bad = subprocess.run([*run, "not-a-repo"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "usage:" in bad.stderr


@pytest.mark.parametrize("name", sorted(MANIFEST["environments"]))
def test_each_declared_environment_is_checked(name):
    answers = answers_as_declared()
    listing = answers[f"repos/{REPO}/environments?per_page=100"]
    listing["environments"] = [env for env in listing["environments"] if env["name"] != name]
    assert check(REPO, MANIFEST, api_of(answers)) == [f"environment {name} is missing"]
