"""What sealing an event's PHI costs: CPU-us to write and to read a ``renewal.requested`` event, sealed
(as rxsm does) and in clear, on this machine. ``python -m bench.seal_cost``."""

import time
from collections.abc import Callable
from uuid import uuid4

from pydantic import TypeAdapter

from schemas.events import RenewalRequested
from schemas.records import Prescription
from schemas.vocabulary import Ehr

ROUNDS = 20_000


def per_call_us(work: Callable[[], object], rounds: int = ROUNDS) -> float:
    started = time.process_time()
    for _ in range(rounds):
        work()
    return (time.process_time() - started) / rounds * 1e6


def main() -> None:
    event = RenewalRequested(
        renewal_id=uuid4(),
        veteran_id="1012845331V153043",
        ehr=Ehr.VISTA,
        prescription=Prescription(
            prescriptionId="22565799",
            prescriptionName="ATORVASTATIN 40MG TAB",
            prescriptionNumber="3636712",
            dispStatus="Active",
            refillRemaining=0,
            sig="TAKE ONE TABLET BY MOUTH AT BEDTIME",
            providerFirstName="Jane",
            providerLastName="Smith",
            quantity="90",
            stationNumber="442",
        ),
    )
    clear_adapter: TypeAdapter[dict[str, object]] = TypeAdapter(dict[str, object])
    sealed = event.model_dump_json()
    clear = clear_adapter.dump_json(event.model_dump(mode="python"))
    write_sealed = per_call_us(event.model_dump_json)
    write_clear = per_call_us(lambda: clear_adapter.dump_json(event.model_dump(mode="python")))
    read_sealed = per_call_us(lambda: RenewalRequested.model_validate_json(sealed))
    read_clear = per_call_us(
        lambda: RenewalRequested.model_validate(clear_adapter.validate_json(clear))
    )
    print(f"renewal.requested, {len(sealed)} bytes sealed, {len(clear)} in clear")
    print(f"write: sealed {write_sealed:.1f} us, in clear {write_clear:.1f} us")
    print(f"read:  sealed {read_sealed:.1f} us, in clear {read_clear:.1f} us")
    extra_ms = (write_sealed - write_clear + read_sealed - read_clear) * 3 / 1000
    print(f"sealing's share of a renewal's three hops: about {max(extra_ms, 0):.3f} CPU-ms")


if __name__ == "__main__":
    main()
