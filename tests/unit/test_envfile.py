"""The env-file parser: the dotenv subset, and errors that never show a line's content."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.config.envfile import parse_env_text, read_env_file
from jobs.core.errors import ConfigError

SAMPLE = """\
# the app's .env, as developers keep it

STRIPE_SECRET_KEY=sk_test_sandbox
export SANITY_API_TOKEN = "tok en\\twith \\"escapes\\""   # trailing comment
NEXT_PUBLIC_SANITY_DATASET='production # not a comment'
REPORT_TO=a@example.com,b@example.com # recipients
EMPTY=
HASH_INSIDE=abc#def
SMTP_PORT=25
SMTP_PORT=2525
"""


def test_the_common_dotenv_forms() -> None:
    assert parse_env_text(SAMPLE) == {
        "STRIPE_SECRET_KEY": "sk_test_sandbox",
        "SANITY_API_TOKEN": 'tok en\twith "escapes"',
        "NEXT_PUBLIC_SANITY_DATASET": "production # not a comment",
        "REPORT_TO": "a@example.com,b@example.com",
        "EMPTY": "",
        "HASH_INSIDE": "abc#def",
        "SMTP_PORT": "2525",
    }


@pytest.mark.parametrize(("line", "problem"), [
    ("just-some-secret-text", "malformed entry"),
    ("1KEY=secret-text", "malformed entry"),
    ("KEY='secret-text", "unterminated single quote"),
    ('KEY="secret-text', "unterminated double quote"),
    ('KEY="secret" text', "unexpected text after the closing quote"),
])
def test_a_malformed_line_names_file_and_line_but_not_its_content(line: str,
                                                                   problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_env_text(f"# header\nOK=1\n{line}\n", source="prod.env")
    message = str(caught.value)
    assert message.startswith("prod.env: line 3")
    assert problem in message
    assert "secret" not in message


def test_read_env_file(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_bytes("\ufeffA=1\r\nB='two'\r\n".encode())
    assert read_env_file(path) == {"A": "1", "B": "two"}
    with pytest.raises(ConfigError, match="not found"):
        read_env_file(tmp_path / "missing.env")
    (tmp_path / "bin.env").write_bytes(b"A=\xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_env_file(tmp_path / "bin.env")
