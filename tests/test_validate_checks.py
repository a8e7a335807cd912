"""``lakeflow validate`` refuses what ``lakeflow run`` refuses before it collects.

Against a real S3 server (SeaweedFS on loopback): a missing bucket and refused
credentials are the same line and exit code from both commands; ``--offline`` skips the
network and says so; a local folder is valid.
"""

from __future__ import annotations

import pytest

from seaweedfs import SeaweedFS

SOURCE = '[sources.seq]\ntype = "test_sequence"\ncount = 10\n'


def s3_pipeline(s3: SeaweedFS, uri: str, **overrides: str) -> str:
    """A pipeline writing ``test_sequence`` rows to ``uri`` on ``s3``."""
    options = "\n".join(f'{k} = "{v}"' for k, v in s3.storage_options(**overrides).items())
    return f'[sink]\nuri = "{uri}"\n\n[sink.storage_options]\n{options}\n\n{SOURCE}'


def refused_alike(cli) -> str:
    """Run ``validate`` and ``run`` on the pipeline; both exit 2 with one same line."""
    checked = cli("validate")
    ran = cli("run")  # refused before any source starts, or ends after 10 rows
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert ran.returncode == 2, ran.stderr
    assert checked.stderr.strip().splitlines()[-1] == ran.stderr.strip().splitlines()[-1]
    assert "valid" not in checked.stdout
    return checked.stderr.strip()


def test_a_missing_bucket_is_refused_by_validate_as_by_run(s3, cli, write_toml):
    write_toml(s3_pipeline(s3, "s3://no-such-bucket/tables"))
    said = refused_alike(cli)
    assert "bucket 'no-such-bucket' does not exist (create it, or correct sink.uri)" in said


def test_refused_credentials_are_refused_by_validate_as_by_run(s3, cli, write_toml):
    write_toml(s3_pipeline(s3, s3.uri(), AWS_SECRET_ACCESS_KEY="wrong-secret-" + "y" * 20))
    said = refused_alike(cli)
    assert "the store refused the credentials" in said
    assert "wrong-secret" not in said


def test_offline_skips_the_store_and_says_so(s3, cli, write_toml):
    write_toml(s3_pipeline(s3, "s3://no-such-bucket/tables"))
    done = cli("validate", "--offline")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("lakeflow.toml: valid\n")
    assert (
        "network checks skipped (--offline): the store, its tables' schemas not checked"
        in done.stdout
    )


def test_a_reachable_bucket_is_valid_and_said_reached(s3, cli, write_toml):
    write_toml(s3_pipeline(s3, s3.uri()))
    done = cli("validate")
    assert done.returncode == 0, done.stderr
    assert "store: reached; the bucket exists and the credentials are accepted" in done.stdout


def test_a_local_folder_is_valid(cli, write_toml):
    write_toml(f'[sink]\nuri = "tables"\n\n{SOURCE}')
    done = cli("validate")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("lakeflow.toml: valid\n")
    assert "skipped" not in done.stdout


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_pipeline_without_sources_is_refused_alike(cli, write_toml, command):
    write_toml('[sink]\nuri = "tables"\n')
    done = cli(command)
    assert done.returncode == 2
    assert "lakeflow.toml: no [sources.NAME] sections: nothing to run" in done.stderr
