"""`make init STACK=prod`: a first prod in one command, run again safely at any time.

    python3 -m scripts.init --stack prod [--org ORG] [--host HOST] [--domain ENV=DOMAIN]…
        [--status-domain DOMAIN] [--email EMAIL] [--image REPOSITORY]
        [--ssh-key-file ~/.ssh/id_ed25519.pub] [--gpg-key-file operator.asc]
        [--registry ADDRESS --registry-user USER [--registry-password-file FILE]]
        [--ssh-user USER] [--ssh-port PORT] [--yes | --host-key-fingerprint SHA256:…]
        [--non-interactive]

For the stack that owns the platform (prod) and the stacks that read it (staging):

1. every value comes from its flag, else, on a terminal, from a question that shows the
   stack files' value (Enter keeps it), else from the stack files; what none of them holds
   is named as a missing flag, and nothing is done;
2. the VPS's host key is fetched (ssh-keyscan) and its fingerprint shown to be compared with
   the provider's console (`--host-key-fingerprint` compares it unattended, `--yes` accepts
   it); a key other than the one already pinned, or a refusal, stops everything;
3. the stack files as they would be are checked by the program's own settings
   (components/settings), gpg and all, before anything is written;
4. `pulumi stack init <org>/<project>/<stack>` for each stack that does not exist yet;
5. the values written into the stack files, each line changed alone (scripts/stack_file.py);
   a value they hold already is left as it is, and said so;
6. every secret the settings read and the stack has not got, generated
   (`secrets.token_hex`) and handed to `pulumi config set --secret` on its stdin: never on a
   command line (`ps` shows those), never printed; a secret that is set is never replaced;
7. the settings over the result, then what is left to do and the DNS records to create.

The organization is written once, in the readers' `aiia:platform_stack`, and the domains in
the platform's stack file: the workflows read both from there (scripts/stack_file.py).

The parts: `stacks` (the stack files read), `questions` (each value from a flag, a question
or the files), `operator_keys`, `host_key` (fetched, shown, trusted), `plan` (the values
written), `stack_secrets` (generated, never shown), `pulumi_stacks` (the CLI), `dns` (the
records to create), `run` (the order of it all, and what is left to do).
"""


class Refused(Exception):
    """Init stops before anything is written: missing values, a bad one, a key not trusted."""
