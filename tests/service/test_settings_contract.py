"""The settings' defaults as a contract across seams: what an empty environment gives (ServiceSettings.from_env)
is what the README's table and settings.py's own table document, and what GET /metadata then reports.

Each document is read as written (its markdown table), not re-derived from the code, so a default changed in
one place and not the others fails here."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from service import settings as settings_module
from service.runtime import DEFAULT_MODELS_DIR
from service.settings import ServiceSettings
from tests.conftest import REPO
from tests.service.conftest import serve_in_process

UNSET = "(unset)"

# Each variable the settings read, and where its value lands in ServiceSettings, written as the documents do.
FIELDS: dict[str, Callable[[ServiceSettings], object]] = {
    "MNIST_MODEL": lambda s: s.runtime.model,
    "MNIST_MODELS_DIR": lambda s: s.runtime.models_dir,
    "MNIST_DEVICE": lambda s: s.runtime.device,
    "MNIST_REQUIRE_GPU": lambda s: s.runtime.require_gpu,
    "MNIST_ORT_THREADS": lambda s: s.runtime.intra_op_threads,
    "MNIST_ORT_SPINNING": lambda s: s.runtime.spinning,
    "MNIST_CUDA_TF32": lambda s: s.runtime.cuda_tf32,
    "MNIST_BATCHING": lambda s: s.batching.enabled,
    "MNIST_MAX_BATCH_SIZE": lambda s: s.batching.max_batch_size,
    "MNIST_MAX_LATENCY_MS": lambda s: s.batching.max_latency_ms,
    "MNIST_MAX_QUEUE": lambda s: s.batching.max_queue,
    "MNIST_WORKERS": lambda s: s.batching.workers,
    "MNIST_TRACE_PREDICT": lambda s: s.trace_predict,
    "MNIST_MAX_IMAGES": lambda s: s.limits.max_images,
    "MNIST_MAX_BODY_BYTES": lambda s: s.limits.max_body_bytes,
    "MNIST_MAX_HEADERS": lambda s: s.limits.max_headers,
    "MNIST_MAX_HEADER_BYTES": lambda s: s.limits.max_header_bytes,
    "MNIST_BODY_TIMEOUT_S": lambda s: s.limits.body_timeout_s,
    "MNIST_API_TOKEN": lambda s: s.api_token,
    "MNIST_LOG_FORMAT": lambda s: s.log_format,
    "MNIST_CORS_ORIGINS": lambda s: s.cors_origins,
    "MNIST_DRAIN_S": lambda s: s.drain_s,
}


def as_documented(value: object) -> str:
    """A setting's value as the tables write it: 1/0 for switches, (unset) for nothing."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if value in ("", ()):
        return UNSET
    return str(value)


def table_defaults(text: str) -> dict[str, str]:
    """variable -> default cell from a `| variable | default | meaning |` markdown table; a row naming several
    variables (`A`, `B` | `1`, `2`) gives each its own. Backticks are dropped, "unset" is written (unset)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].lstrip("`").startswith("MNIST_"):
            continue
        names = [n.strip(" `") for n in cells[0].split(",")]
        values = [v.strip(" `") for v in cells[1].split(",")] if len(names) > 1 else [cells[1].strip(" `")]
        for name, value in zip(names, values, strict=True):
            found[name] = UNSET if value in ("unset", UNSET) else value
    return found


def variables_read() -> set[str]:
    """Every MNIST_ variable settings.py names in its code (its docstring's table and the removed ones left out)."""
    source = Path(settings_module.__file__).read_text()
    code = source.split('"""', 2)[2]
    return set(re.findall(r'"(MNIST_[A-Z0-9_]+)"', code)) - set(settings_module.REMOVED)


@pytest.fixture(scope="module")
def from_empty_env() -> ServiceSettings:
    return ServiceSettings.from_env({})


def test_every_variable_read_is_in_the_contract() -> None:
    assert variables_read() <= set(FIELDS), "a new setting: add it to FIELDS here, and to both tables"


@pytest.mark.parametrize("where", ["settings.py", "README.md"])
def test_an_empty_environment_gives_the_documented_defaults(where: str, from_empty_env: ServiceSettings) -> None:
    text = settings_module.__doc__ if where == "settings.py" else (REPO / "README.md").read_text()
    documented = table_defaults(text)
    for name in sorted(variables_read()):
        assert name in documented, f"{name} is read but not documented in {where}"
        actual = FIELDS[name](from_empty_env)
        if name == "MNIST_MODELS_DIR":  # documented as a place: models/ beside service/
            assert actual == DEFAULT_MODELS_DIR == str(REPO / "models")
            assert documented[name].startswith("models"), (where, documented[name])
            continue
        assert documented[name] == as_documented(actual), f"{where}: {name}"


@pytest.mark.parametrize("name", sorted(settings_module.REMOVED))
@pytest.mark.parametrize("value", ["1", "0"])
def test_a_removed_variable_fails_at_start_saying_what_replaced_it(name: str, value: str) -> None:
    """Set to anything, it is refused (not ignored), in one line naming it and what replaced it; empty is unset."""
    with pytest.raises(ValueError, match=rf"^{name} was removed: .*service/front\.py") as refused:
        ServiceSettings.from_env({name: value})
    assert "\n" not in str(refused.value)
    assert ServiceSettings.from_env({name: ""}) == ServiceSettings.from_env({})
    assert name not in table_defaults((REPO / "README.md").read_text())


def test_the_tables_parse_as_written() -> None:
    """The parser on the shapes the tables use, so a document that stops parsing is not read as empty."""
    rows = "| `MNIST_A` | `1` | x |\n| `MNIST_B`, `MNIST_C` | `2`, `3` | y |\n| `MNIST_D` | unset | z |\n| a | b | c |"
    assert table_defaults(rows) == {"MNIST_A": "1", "MNIST_B": "2", "MNIST_C": "3", "MNIST_D": UNSET}
    assert len(table_defaults((REPO / "README.md").read_text())) >= 20


def test_metadata_reports_the_defaults_of_an_empty_environment(from_empty_env: ServiceSettings) -> None:
    """What a client of a service started with no settings reads at GET /metadata."""
    documented = table_defaults((REPO / "README.md").read_text())
    with serve_in_process(from_empty_env) as client:
        body = client.get("/metadata").json()
    reported = {
        "MNIST_MODEL": body["name"],
        "MNIST_BATCHING": body["batching"]["enabled"],
        "MNIST_MAX_BATCH_SIZE": body["batching"]["max_batch_size"],
        "MNIST_MAX_LATENCY_MS": body["batching"]["max_latency_ms"],
        "MNIST_WORKERS": body["batching"]["workers"],
        "MNIST_ORT_THREADS": body["batching"]["ort_intra_op_threads"],
        "MNIST_MAX_IMAGES": body["limits"]["max_images_per_request"],
        "MNIST_MAX_BODY_BYTES": body["limits"]["max_body_bytes"],
        "MNIST_MAX_QUEUE": body["limits"]["max_queued_requests"],
    }
    assert {name: as_documented(value) for name, value in reported.items()} == {
        name: documented[name] for name in reported
    }


# Each variable set to a value other than its default, and what the settings must then hold.
SET: dict[str, tuple[str, object]] = {
    "MNIST_MODEL": ("pigeon", "pigeon"),
    "MNIST_MODELS_DIR": ("/srv/models", "/srv/models"),
    "MNIST_DEVICE": ("cpu", "cpu"),
    "MNIST_REQUIRE_GPU": ("1", True),
    "MNIST_ORT_THREADS": ("3", 3),
    "MNIST_ORT_SPINNING": ("yes", True),
    "MNIST_CUDA_TF32": ("on", True),
    "MNIST_BATCHING": ("0", False),
    "MNIST_MAX_BATCH_SIZE": ("7", 7),
    "MNIST_MAX_LATENCY_MS": ("9", 9),
    "MNIST_MAX_QUEUE": ("11", 11),
    "MNIST_WORKERS": ("2", 2),
    "MNIST_TRACE_PREDICT": ("TRUE", True),
    "MNIST_MAX_IMAGES": ("13", 13),
    "MNIST_MAX_BODY_BYTES": ("2048", 2048),
    "MNIST_MAX_HEADERS": ("20", 20),
    "MNIST_MAX_HEADER_BYTES": ("4096", 4096),
    "MNIST_BODY_TIMEOUT_S": ("4", 4),
    "MNIST_API_TOKEN": ("s3cret", "s3cret"),
    "MNIST_LOG_FORMAT": (" JSON ", "json"),
    "MNIST_CORS_ORIGINS": (" https://a.example, https://b.example ,,", ("https://a.example", "https://b.example")),
    "MNIST_DRAIN_S": ("0", 0),
}
# The smallest value each integer setting takes; one less is refused, naming the variable.
MINIMUM = {
    "MNIST_ORT_THREADS": 0,
    "MNIST_MAX_BATCH_SIZE": 2,
    "MNIST_MAX_LATENCY_MS": 1,
    "MNIST_MAX_QUEUE": 1,
    "MNIST_WORKERS": 1,
    "MNIST_MAX_IMAGES": 1,
    "MNIST_MAX_BODY_BYTES": 1024,
    "MNIST_MAX_HEADERS": 10,
    "MNIST_MAX_HEADER_BYTES": 1024,
    "MNIST_BODY_TIMEOUT_S": 1,
    "MNIST_DRAIN_S": 0,
}


def test_every_variable_has_a_value_to_set() -> None:
    assert set(SET) == set(FIELDS)


@pytest.mark.parametrize("name", sorted(SET))
def test_each_variable_reaches_its_setting_and_no_other(name: str, from_empty_env: ServiceSettings) -> None:
    raw, expected = SET[name]
    assert FIELDS[name](from_empty_env) != expected  # a value other than the default
    settings = ServiceSettings.from_env({name: raw})
    for other, field in FIELDS.items():
        assert field(settings) == (expected if other == name else field(from_empty_env)), other


@pytest.mark.parametrize("name", sorted(MINIMUM))
def test_an_integer_setting_takes_its_minimum_and_refuses_less(name: str) -> None:
    assert FIELDS[name](ServiceSettings.from_env({name: str(MINIMUM[name])})) == MINIMUM[name]
    with pytest.raises(ValueError, match=rf"^{name}: got {MINIMUM[name] - 1}; allowed: an integer >= {MINIMUM[name]}"):
        ServiceSettings.from_env({name: str(MINIMUM[name] - 1)})
    with pytest.raises(ValueError, match=rf"^{name}: got 'many'"):
        ServiceSettings.from_env({name: "many"})


def test_an_empty_value_is_the_default_and_an_unknown_log_format_is_refused(from_empty_env: ServiceSettings) -> None:
    assert ServiceSettings.from_env(dict.fromkeys(SET, "")) == from_empty_env
    with pytest.raises(ValueError, match="MNIST_LOG_FORMAT: got 'xml'"):
        ServiceSettings.from_env({"MNIST_LOG_FORMAT": "xml"})
