"""The operator's commands go through the same command layer as the API: the same rules, the
same refusals, said on stderr with exit status 2."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from benchmarks.harness import HYOJUNKA


def _hyojunka(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HYOJUNKA_DATA_DIR": str(tmp_path / "data")}
    return subprocess.run(
        [HYOJUNKA, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_vendors_and_tokens_from_the_command_line_follow_the_apis_rules(tmp_path: Path) -> None:
    made = _hyojunka(tmp_path, "vendor", "create", "--id", "acme", "--name", "アクメ")
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "acme"
    again = _hyojunka(tmp_path, "vendor", "create", "--id", "acme", "--name", "アクメ")
    assert again.returncode == 2
    assert "already exists" in again.stderr
    bad = _hyojunka(tmp_path, "vendor", "create", "--id", "ACME corp", "--name", "x")
    assert bad.returncode == 2 and "id" in bad.stderr

    unscoped = _hyojunka(tmp_path, "token", "create", "--role", "pm", "--name", "suzuki")
    assert unscoped.returncode == 2
    assert "lg_code" in unscoped.stderr
    token = _hyojunka(
        tmp_path, "token", "create", "--role", "pm", "--name", "suzuki", "--lg-code", "131016"
    )
    assert token.returncode == 0, token.stderr
    secret = token.stdout.strip()
    assert secret.startswith("hyj_")

    listed = _hyojunka(tmp_path, "token", "list")
    assert listed.returncode == 0, listed.stderr
    assert "suzuki" in listed.stdout and "131016" in listed.stdout
    assert secret not in listed.stdout
    token_id = next(line.split("\t")[0] for line in listed.stdout.splitlines() if "suzuki" in line)
    revoked = _hyojunka(tmp_path, "token", "revoke", token_id)
    assert revoked.returncode == 0, revoked.stderr
    after = _hyojunka(tmp_path, "token", "list", "--revoked")
    assert "suzuki" in after.stdout and "revoked" in after.stdout
    unknown = _hyojunka(tmp_path, "token", "revoke", "424242")
    assert unknown.returncode == 2 and "no token" in unknown.stderr


def test_a_template_is_stored_from_a_json_file_and_a_bad_one_refused(tmp_path: Path) -> None:
    import json
    from dataclasses import asdict

    from workflows.procedure import DEFAULT_TEMPLATE

    good = tmp_path / "city.json"
    tasks = [asdict(spec) for spec in DEFAULT_TEMPLATE.tasks]
    good.write_text(json.dumps({"id": "city", "version": "2", "name": "市", "tasks": tasks}))
    stored = _hyojunka(tmp_path, "template", "add", str(good))
    assert stored.returncode == 0, stored.stderr
    assert stored.stdout.strip() == "city@2"
    assert _hyojunka(tmp_path, "template", "add", str(good)).returncode == 2  # exists
    cyclic = [{**tasks[0], "depends_on": [tasks[-1]["key"]]}, *tasks[1:]]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"id": "city", "version": "3", "name": "市", "tasks": cyclic}))
    refused = _hyojunka(tmp_path, "template", "add", str(bad))
    assert refused.returncode == 2 and "cycle" in refused.stderr


def test_people_from_the_command_line_get_a_link_and_are_deactivated_not_deleted(
    tmp_path: Path,
) -> None:
    import email
    import email.policy
    import mailbox

    added = _hyojunka(
        tmp_path,
        *("person", "add", "--name", "最初の 管理者", "--email", "Admin@City.Example.jp"),
        *("--role", "admin"),
    )
    assert added.returncode == 0, added.stderr
    assert "/login/link/lnk_" in added.stdout
    # No mail server set: the invitation is in the Maildir, in Japanese, with the same link.
    box = mailbox.Maildir(tmp_path / "data" / "mail", create=False)
    (stored,) = list(box)
    message = email.message_from_bytes(stored.as_bytes(), policy=email.policy.default)
    assert message["Subject"] == "【hyojunka】システム標準化 移行管理への招待"
    link = added.stdout.split("sign-in link (7 days, once): ")[1].strip()
    assert link in str(message.get_body(preferencelist=("plain",)).get_content())
    taken = _hyojunka(
        tmp_path,
        *("person", "add", "--name", "別人", "--email", "admin@city.example.jp"),
        *("--role", "observer"),
    )
    assert taken.returncode == 2 and "already in use" in taken.stderr
    unscoped = _hyojunka(
        tmp_path, "person", "add", "--name", "担当", "--email", "pm@city.example.jp", "--role", "pm"
    )
    assert unscoped.returncode == 2 and "lg_code" in unscoped.stderr
    listed = _hyojunka(tmp_path, "person", "list")
    assert "最初の 管理者" in listed.stdout and "active" in listed.stdout
    person_id = added.stdout.split("\t")[0]
    removed = _hyojunka(tmp_path, "person", "remove", person_id)
    assert removed.returncode == 0, removed.stderr
    assert "inactive" in _hyojunka(tmp_path, "person", "list").stdout


def test_up_refuses_workers_that_would_share_a_port_before_starting_anything(
    tmp_path: Path,
) -> None:
    none = _hyojunka(tmp_path, "up", "--workers", "0")
    assert none.returncode == 2 and "not a positive number" in none.stderr
    env = {
        "HYOJUNKA_WORKER_HEALTH_ADDRESS": "127.0.0.1:18081",
        "HYOJUNKA_WORKER_METRICS_ADDRESS": "127.0.0.1:18082",
    }
    crowded = subprocess.run(
        [HYOJUNKA, "up", "--workers", "2"],
        env={**os.environ, "HYOJUNKA_DATA_DIR": str(tmp_path / "data"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert crowded.returncode == 1
    assert "worker's metrics and worker-1's probes would both use port 18082" in crowded.stderr
    assert not (tmp_path / "data" / "up.json").exists()
    assert not (tmp_path / "data" / "hyojunka.db").exists()  # refused before anything began
