"""Write (or check) the JSON Schema of every event under ``schemas/json``.

python -m schemas.export          # rewrite the files
python -m schemas.export --check  # exit 1 when a committed file is stale
"""

import json
import sys
from pathlib import Path

from schemas.events import EVENT_MODELS

JSON_DIR = Path(__file__).parent / "json"


def rendered() -> dict[str, str]:
    """File name -> JSON Schema text, one per event model."""
    files: dict[str, str] = {}
    for model in EVENT_MODELS:
        event_type = model.model_fields["event_type"].default
        schema = model.model_json_schema(mode="serialization")
        schema["$id"] = f"https://rxsm.dev/schemas/v1/{event_type}.json"
        files[f"{event_type}.v1.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files


def stale_files() -> list[str]:
    """Names of exported files that are missing, differ from the models, or belong to no model."""
    expected = rendered()
    on_disk = {path.name for path in JSON_DIR.glob("*.json")}
    stale = [
        name
        for name, text in expected.items()
        if not (JSON_DIR / name).exists() or (JSON_DIR / name).read_text() != text
    ]
    return sorted(stale + sorted(on_disk - expected.keys()))


def write() -> None:
    JSON_DIR.mkdir(exist_ok=True)
    for stale in JSON_DIR.glob("*.json"):
        stale.unlink()
    for name, text in rendered().items():
        (JSON_DIR / name).write_text(text)


def main(argv: list[str]) -> int:
    if "--check" in argv:
        stale = stale_files()
        if stale:
            print("stale JSON Schema exports (run `make schemas`):", ", ".join(stale))
            return 1
        print("JSON Schema exports are up to date")
        return 0
    write()
    print(f"wrote {len(EVENT_MODELS)} JSON Schema files to {JSON_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
