"""Print (or ``--write PATH``) the API's OpenAPI document, built from the app without a database.

The console's types (``console/src/api/schema.d.ts``) are generated from it with
openapi-typescript; ``tests/test_console.py`` checks that they have not drifted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, cast

from fleetpulse.provision_api.api.deps import Services
from fleetpulse.provision_api.app import create_app


def openapi_document() -> dict[str, Any]:
    # the schema needs the routes only: no services are wired (nothing is called)
    return create_app(cast(Services, None)).openapi()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="write to this file instead of stdout")
    args = parser.parse_args(argv)
    text = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
    if args.write is None:
        sys.stdout.write(text)
    else:
        args.write.write_text(text)


if __name__ == "__main__":
    main()
