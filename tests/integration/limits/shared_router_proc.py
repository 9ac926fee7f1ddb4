"""A router process for the shared-limits tests: fires N requests at once and prints
what happened as JSON. Run as ``python shared_router_proc.py '<json args>'``."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from interlock import Deployment, RateLimitError, Router


async def main(args: dict[str, Any]) -> dict[str, int]:
    router = Router(
        [Deployment(group="g", model="m", id="shared-0", api_base=args["url"], rpm=args["rpm"])],
        shared={"url": args["redis"], "prefix": args["prefix"], "timeout": args["timeout"]},
    )
    ok = limited = 0
    async with router:
        results = await asyncio.gather(
            *(
                router.acompletion("g", [{"role": "user", "content": "hi"}])
                for _ in range(args["n"])
            ),
            return_exceptions=True,
        )
        for r in results:
            if isinstance(r, RateLimitError):
                limited += 1
            elif isinstance(r, BaseException):
                raise r
            else:
                ok += 1
        shared = router.shared
        assert shared is not None
        active = int(shared.active)
    return {"ok": ok, "rate_limited": limited, "active": active}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))), flush=True)
