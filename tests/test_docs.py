"""The documents name the tests behind their claims; every test they name must exist."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMED = re.compile(r"`(test_[a-z0-9_]+)`")


def defined_tests() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        names |= set(re.findall(r"^(?:async )?def (test_[a-z0-9_]+)", path.read_text(), re.M))
    return names


def test_every_test_named_in_the_docs_exists() -> None:
    defined = defined_tests()
    missing = {
        f"{doc.name}: {name}"
        for doc in (ROOT / "docs").glob("*.md")
        for name in NAMED.findall(doc.read_text())
        if name not in defined
    }
    assert not missing, f"docs name tests that do not exist: {sorted(missing)}"


def test_the_security_document_names_tests() -> None:
    assert len(NAMED.findall((ROOT / "docs" / "security.md").read_text())) >= 40


def test_operations_lists_every_metric_and_the_readme_links_it() -> None:
    from auth_service.metrics import AuthMetrics
    from service.metrics import ChatMetrics

    chat = ChatMetrics()
    chat.watch(sockets=lambda: 0, links=lambda: {"redis": True}, presence=lambda: 0)
    exposed = {
        family.name + ("_total" if family.type == "counter" else "")
        for registry in (chat.registry, AuthMetrics().registry)
        for family in registry.collect()
    }
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert len(exposed) == 23
    assert {name for name in exposed if f"`{name}`" not in operations} == set()
    assert "(docs/operations.md)" in (ROOT / "README.md").read_text()
