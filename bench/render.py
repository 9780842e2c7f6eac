"""Config templates: `@@name@@` placeholders (nginx and HAProxy use `$` and `%` themselves)."""

from __future__ import annotations

import re
from pathlib import Path

TEMPLATES = Path(__file__).parent / "templates"
_PLACEHOLDER = re.compile(r"@@([a-z_]+)@@")


def render(template: str, out: Path, **values: object) -> Path:
    """Fill `templates/<template>` and write it to `out`.

    Raises KeyError naming the template and the placeholder that has no value.
    """
    text = (TEMPLATES / template).read_text()

    def fill(m: re.Match) -> str:
        if m.group(1) not in values:
            raise KeyError(f"{template}: no value for @@{m.group(1)}@@")
        return str(values[m.group(1)])

    out.write_text(_PLACEHOLDER.sub(fill, text))
    return out
