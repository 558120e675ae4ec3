"""Every script the program runs on the host, and every rendered *.sh file, is shellcheck-clean."""

import subprocess

import pytest

from tests.rendered.conftest import STACKS, unwrap_sudo

pytestmark = pytest.mark.rendered


def shellcheck(script: str, shell: str) -> str:
    """shellcheck's findings (all severities, style included); empty when clean."""
    result = subprocess.run(["shellcheck", "--norc", "-s", shell, "-"], input=script,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode in (0, 1), result.stderr  # 1 = findings; anything else broke
    return result.stdout


def shell_of(script: str) -> str:
    """POSIX sh for `#!/bin/sh` (the certbot deploy hook runs in the certbot image), else bash."""
    return "sh" if script.startswith("#!/bin/sh\n") else "bash"


@pytest.mark.parametrize("stack", STACKS)
def test_every_host_script_is_shellcheck_clean(rendered, stack):
    scripts = rendered[stack].scripts
    assert "platform-nginx-tls-bootstrap" in scripts
    findings = {}
    for name, script in scripts.items():
        # On an SSH host the script runs inside `sudo -n bash -c '…'`: check both layers.
        for layer, text in {"": script, " (inside sudo)": unwrap_sudo(script)}.items():
            if layer and text == script:
                continue
            if output := shellcheck(text, "bash"):
                findings[name + layer] = output
    assert not findings, "\n".join(f"--- {name}\n{output}" for name, output in findings.items())


@pytest.mark.parametrize("stack", STACKS)
def test_every_rendered_shell_file_is_shellcheck_clean(rendered, stack):
    files = {path: content for path, content in rendered[stack].files.items()
             if path.endswith(".sh") or content.startswith(("#!/bin/sh\n", "#!/usr/bin/env bash\n",
                                                             "#!/bin/bash\n"))}
    if stack == "prod":  # Let's Encrypt: the renewal script and certbot's deploy hook
        assert {path.rsplit("/", 1)[1] for path in files} >= {"certbot.sh", "deploy-hook.sh"}
    findings = {path: output for path, content in files.items()
                if (output := shellcheck(content, shell_of(content)))}
    assert not findings, "\n".join(f"--- {path}\n{output}" for path, output in findings.items())
