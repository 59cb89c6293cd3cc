"""The one service config for serve / monitor / gateway (ordinance/service_config.py,
docs/deploy.md): precedence flag > environment > file > default, errors that name the key
where it stands, the documented example loads, and the docs list every key."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from ordinance import service_config as sc
from ordinance.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ordinance.yaml"


def parse(*argv: str, environ: dict[str, str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(list(argv))
    return sc.resolve(args.command, args, environ or {})


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ordinance.yaml"
    path.write_text(text)
    return path


def test_the_documented_example_loads_for_every_process() -> None:
    env: dict[str, str] = {}
    serve = parse("serve", "--service-config", str(EXAMPLE), environ=env)
    assert (serve.log, serve.prefix, serve.target) == (
        "kafka://kafka:29092",
        "ordinance.",
        "default",
    )
    assert (serve.http, serve.max_clock_skew, serve.dedupe_horizon) == (
        "0.0.0.0:9464",
        300.0,
        7 * 86400.0,
    )
    assert serve.trust is None and serve.state_dir is None
    monitor = parse("monitor", environ={"ORDINANCE_CONFIG": str(EXAMPLE)})
    assert (monitor.log, monitor.http, monitor.config) == (
        "kafka://kafka:29092",
        "0.0.0.0:9465",
        None,
    )
    gateway = parse("gateway", environ={"ORDINANCE_CONFIG": str(EXAMPLE)})
    assert (gateway.http, gateway.timeout, gateway.max_body, gateway.drain) == (
        "0.0.0.0:8080",
        5.0,
        1048576,
        5.0,
    )


@pytest.mark.parametrize(
    ("argv", "environ", "file_http", "expected"),
    [
        # flag > environment > file > default, one layer removed at a time
        (
            ["--http", "127.0.0.1:1"],
            {"ORDINANCE_SERVE_HTTP": "127.0.0.1:2"},
            "127.0.0.1:3",
            "127.0.0.1:1",
        ),
        ([], {"ORDINANCE_SERVE_HTTP": "127.0.0.1:2"}, "127.0.0.1:3", "127.0.0.1:2"),
        ([], {}, "127.0.0.1:3", "127.0.0.1:3"),
        ([], {}, None, None),
        # an empty variable counts as unset
        ([], {"ORDINANCE_SERVE_HTTP": ""}, "127.0.0.1:3", "127.0.0.1:3"),
    ],
)
def test_precedence_flag_environment_file_default(
    tmp_path: Path,
    argv: list[str],
    environ: dict[str, str],
    file_http: str | None,
    expected: str | None,
) -> None:
    text = "log: sqlite:///x.db\n" + (f"serve:\n  http: {file_http}\n" if file_http else "")
    path = write(tmp_path, text)
    args = parse("serve", "--service-config", str(path), *argv, environ=environ)
    assert args.http == expected


def test_precedence_holds_for_typed_values_too(tmp_path: Path) -> None:
    path = write(
        tmp_path, "log: sqlite:///x.db\nserve:\n  max_clock_skew: 60\n  dedupe_horizon: 12h\n"
    )
    args = parse("serve", "--service-config", str(path))
    assert (args.max_clock_skew, args.dedupe_horizon) == (60.0, 12 * 3600.0)
    env = {"ORDINANCE_SERVE_MAX_CLOCK_SKEW": "off", "ORDINANCE_SERVE_DEDUPE_HORIZON": "90m"}
    args = parse("serve", "--service-config", str(path), environ=env)
    assert (args.max_clock_skew, args.dedupe_horizon) == (None, 5400.0)
    args = parse("serve", "--service-config", str(path), "--max-clock-skew", "5", environ=env)
    assert args.max_clock_skew == 5.0
    # `off` given as a flag is not mistaken for "no flag" (None is a value here)
    args = parse("serve", "--service-config", str(path), "--max-clock-skew", "off")
    assert args.max_clock_skew is None
    default = parse("serve", "--log", "sqlite:///x.db")
    assert (default.max_clock_skew, default.dedupe_horizon, default.prefix) == (
        300.0,
        7 * 86400.0,
        "ordinance.",
    )


def test_shared_keys_the_section_and_the_process_variable_win(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "log: sqlite:///shared.db\nprefix: staging.\ngateway:\n  log: sqlite:///gw.db\n  http: :0\n",
    )
    assert parse("serve", "--service-config", str(path)).log == "sqlite:///shared.db"
    assert parse("serve", "--service-config", str(path)).prefix == "staging."
    assert parse("gateway", "--service-config", str(path)).log == "sqlite:///gw.db"
    env = {"ORDINANCE_LOG": "sqlite:///env.db"}
    assert parse("serve", "--service-config", str(path), environ=env).log == "sqlite:///env.db"
    env["ORDINANCE_SERVE_LOG"] = "sqlite:///serve-env.db"
    assert (
        parse("serve", "--service-config", str(path), environ=env).log == "sqlite:///serve-env.db"
    )
    # the shared variable outranks the file's section: environment > file, whatever the level
    assert parse("gateway", "--service-config", str(path), environ=env).log == "sqlite:///env.db"


def test_paths_in_the_file_are_relative_to_it(tmp_path: Path) -> None:
    path = write(
        tmp_path, "log: sqlite:///x.db\ntrust: keys/trust.yaml\nmonitor:\n  thresholds: m.yaml\n"
    )
    assert parse("serve", "--service-config", str(path)).trust == str(
        tmp_path / "keys" / "trust.yaml"
    )
    monitor = parse("monitor", "--service-config", str(path))
    assert monitor.config == str(tmp_path / "m.yaml")
    # the flag keeps its meaning: the monitor's thresholds file, relative to the cwd
    assert parse("monitor", "--service-config", str(path), "--config", "t.yaml").config == "t.yaml"
    assert (
        parse("monitor", "--service-config", str(path), "--thresholds", "t.yaml").config == "t.yaml"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "log: x\nserve:\n  htp: :9464\n",
            "ordinance.yaml:3:3: unknown key serve.htp; known in serve:",
        ),
        ("log: x\nservee: {}\n", "ordinance.yaml:2:1: unknown key 'servee'"),
        (
            "log: x\ngateway:\n  timeout: soon\n",
            "ordinance.yaml:3:12: gateway.timeout: must be a number",
        ),
        (
            "log: x\ngateway:\n  timeout: 0\n",
            "ordinance.yaml:3:12: gateway.timeout: wants 0 < value <= 600",
        ),
        ("log: x\ngateway:\n  max_body: 1.5\n", "gateway.max_body: must be a whole number"),
        (
            "log: x\ngateway:\n  max_body: 999999999\n",
            "gateway.max_body: wants 1 <= value <= 4194304",
        ),
        (
            "log: x\nserve:\n  http: nowhere\n",
            "ordinance.yaml:3:9: serve.http: --http wants HOST:PORT",
        ),
        ("log: x\nserve:\n  dedupe_horizon: forever\n", "serve.dedupe_horizon: not a duration"),
        ("log: x\nserve:\n  max_clock_skew: true\n", "serve.max_clock_skew: must be a number"),
        ("log: 5\n", "ordinance.yaml:1:6: log: must be a non-empty string"),
        ("version: 2\n", "ordinance.yaml:1:10: version 2 is not one this Ordinance reads"),
        ("- log\n", "ordinance.yaml:1:1: expected a mapping"),
        ("serve: [1]\n", "ordinance.yaml:1:8: serve must be a mapping"),
        ("log: [\n", "not YAML"),
    ],
)
def test_errors_name_the_key_and_where_it_stands(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(sc.ServiceConfigError) as caught:
        sc.load_file(path)
    assert message in str(caught.value)


def test_the_whole_file_is_checked_whichever_process_reads_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "log: sqlite:///x.db\ngateway:\n  drain: -1\n")
    assert main(["serve", "--service-config", str(path), "--json"]) == 2
    assert "gateway.drain: wants 0 <= value <= 300" in capsys.readouterr().out


def test_environment_errors_name_the_variable_and_a_missing_log_says_how_to_give_it(
    tmp_path: Path,
) -> None:
    with pytest.raises(
        sc.ServiceConfigError, match=r"\$ORDINANCE_GATEWAY_TIMEOUT: must be a number"
    ):
        parse(
            "gateway", "--log", "x", "--http", ":0", environ={"ORDINANCE_GATEWAY_TIMEOUT": "soon"}
        )
    with pytest.raises(
        sc.ServiceConfigError, match=r"gateway needs http: give --http, \$ORDINANCE_GATEWAY_HTTP"
    ):
        parse("gateway", "--log", "x")
    with pytest.raises(
        sc.ServiceConfigError, match=r"serve needs log: give --log, \$ORDINANCE_LOG or log:"
    ):
        parse("serve")
    with pytest.raises(sc.ServiceConfigError, match="cannot read the service config"):
        parse("serve", environ={"ORDINANCE_CONFIG": str(tmp_path / "missing.yaml")})


def test_every_option_is_a_flag_of_its_command() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for process, opts in sc.PROCESSES.items():
        sub = subparsers.choices[process]
        flags = {s: a.dest for a in sub._actions for s in a.option_strings}
        assert "--service-config" in flags
        for option in opts:
            assert flags.get(option.flag) == option.attr, (process, option.key)
    # shared keys mean one thing wherever they appear
    for key in sc.SHARED_KEYS:
        kinds = {o.kind for opts in sc.PROCESSES.values() for o in opts if o.key == key}
        assert len(kinds) == 1, key


def test_docs_carry_the_generated_reference_and_name_every_key() -> None:
    docs = (ROOT / "docs" / "deploy.md").read_text()
    assert sc.reference_markdown() in docs, (
        "docs/deploy.md's reference is stale: paste `python -m ordinance.service_config`"
    )
    for process, opts in sc.PROCESSES.items():
        for option in opts:
            for name in sc.env_names(process, option):
                assert f"`{name}`" in docs
    example = EXAMPLE.read_text()
    for process in sc.PROCESSES:
        assert f"\n{process}:\n" in example
